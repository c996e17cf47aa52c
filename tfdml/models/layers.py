"""Small registered layers used by tfdml models: pixel preprocessing, gray → RGB, L2 norm."""
import keras
from keras import ops

from tfdml import distances

# Per-channel constants of the keras.applications preprocessing modes.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_BNINCEPTION_MEAN_BGR = (104.0, 117.0, 128.0)
PREPROCESSING_MODES = ("caffe", "tf", "torch", "bninception", "unit", "none", "affine")
# Modes with per-channel RGB statistics: they need exactly 3 channels.
RGB_MODES = ("caffe", "torch", "bninception", "affine")


@keras.saving.register_keras_serializable(package="tfdml")
class PixelPreprocessing(keras.layers.Layer):
    """Maps raw RGB pixels in [0, 255] to a backbone's expected input.

    Modes (the first three as in `keras.applications` `preprocess_input`):

    - "caffe": RGB → BGR, minus the ImageNet BGR mean (ResNet, VGG).
    - "tf": x / 127.5 − 1 (Inception, MobileNet, Xception; tfdml's GoogLeNet,
      equal to torchvision's `transform_input=True`).
    - "torch": x / 255, minus ImageNet mean, divided by std (DenseNet;
      tfdml's torchvision-layout ResNets and VGG16-BN).
    - "bninception": RGB → BGR in [0, 255], minus the mean (104, 117, 128)
      (pretrainedmodels' BN-Inception settings; std 1).
    - "unit": x / 255 (tfdml's small CNN).
    - "none": unchanged (EfficientNet / ConvNeXt include their own scaling).
    - "affine": x · scale + offset per channel (`scale`, `offset`: three
      values each; a KerasHub preset's `ImageConverter`).

    "caffe", "torch", "bninception" and "affine" need 3-channel input
    (`EmbeddingModel` repeats a gray channel with `GrayToRGB` first); the other
    modes work on any channel count.
    """

    def __init__(self, mode="tf", scale=None, offset=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"Unknown preprocessing mode={mode!r}; expected one of {PREPROCESSING_MODES}.")
        if (mode == "affine") != (scale is not None and offset is not None):
            raise ValueError(f"scale and offset are given with, and only with, mode='affine' (got mode={mode!r}, "
                             f"scale={scale!r}, offset={offset!r}).")
        if mode == "affine" and (len(scale) != 3 or len(offset) != 3):
            raise ValueError(f"mode='affine' takes three scale and three offset values, got {scale!r}, {offset!r}.")
        self.mode = mode
        self.scale = None if scale is None else [float(v) for v in scale]
        self.offset = None if offset is None else [float(v) for v in offset]

    def build(self, input_shape):
        """Raises `ValueError` for an ImageNet-RGB `mode` on input without 3 channels."""
        if self.mode in RGB_MODES and input_shape[-1] != 3:
            raise ValueError(f"PixelPreprocessing mode={self.mode!r} normalises with ImageNet RGB statistics and "
                             f"needs 3 channels, got input shape {tuple(input_shape)}; repeat a gray channel "
                             "with tfdml.models.GrayToRGB first.")
        super().build(input_shape)

    def call(self, images):
        """Maps `images` (pixel values in [0, 255]) to the backbone's input as `mode` says."""
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)
        if self.mode == "bninception":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(_BNINCEPTION_MEAN_BGR, dtype=x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "affine":
            return (x * ops.convert_to_tensor(self.scale, dtype=x.dtype)
                    + ops.convert_to_tensor(self.offset, dtype=x.dtype))
        return x

    def get_config(self):
        """Config of this layer: `mode`, and `scale` and `offset` for "affine" (Keras serialisation)."""
        config = {**super().get_config(), "mode": self.mode}
        if self.mode == "affine":
            config.update(scale=self.scale, offset=self.offset)
        return config


@keras.saving.register_keras_serializable(package="tfdml")
class GrayToRGB(keras.layers.Layer):
    """Repeats a single (gray) channel three times: (..., 1) → (..., 3), R = G = B."""

    def build(self, input_shape):
        """Raises `ValueError` unless the input has one channel."""
        if input_shape[-1] != 1:
            raise ValueError(f"GrayToRGB expects 1 channel, got input shape {tuple(input_shape)}.")
        super().build(input_shape)

    def call(self, images):
        """Repeats the single channel of `images` three times."""
        return ops.repeat(images, 3, axis=-1)

    def compute_output_shape(self, input_shape):
        """The input shape with 3 channels."""
        return (*input_shape[:-1], 3)


@keras.saving.register_keras_serializable(package="tfdml")
class L2Normalization(keras.layers.Layer):
    """L2-normalises the last axis (`tfdml.distances.l2_normalize`: zero vectors stay zero); output in float32."""

    def call(self, x):
        """The rows of `x` scaled to unit L2 norm, in float32."""
        return distances.l2_normalize(ops.cast(x, "float32"))

    def compute_output_spec(self, x):
        """The input shape, in float32."""
        return keras.KerasTensor(x.shape, dtype="float32")
