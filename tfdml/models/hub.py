"""KerasHub image backbones (ViT, DINOv2, CLIP / SigLIP image towers) inside `EmbeddingModel` (extra `hub`).

`EmbeddingModel(backbone="hub:<preset>")` takes any KerasHub vision backbone
preset: a name (`"hub:dinov2_base"`, `"hub:vit_base_patch16_224_imagenet"`),
a `kaggle://` / `hf://` handle, or a local preset directory (what
`Backbone.save_to_preset` writes). `weights="imagenet"` (or `"preset"`) loads
the preset's pretrained weights (downloaded by KerasHub where there is
network); `weights=None` builds the preset's architecture with random
weights. The preset's `ImageConverter` scale and offset become the model's
pixel preprocessing (raw RGB 0–255 in, as for every tfdml model); a preset
without one gets x / 255.

The backbone is the preset's image tower (for image-text presets such as
CLIP and SigLIP, their `vision_encoder`), at the preset's image size. Its
output is either a token sequence (batch, tokens, dim) — ViT, DINOv2, CLIP's
vision encoder — pooled by `pooling` ("cls": the first token, "avg"/"max":
over all tokens) into the "pool" tap, or an already pooled vector (SigLIP's
attention-pooling head), which is the "pool" tap as it is. CLIP's image-text
projection is not part of the tower (add an fc layer to learn one).
The backbone's Keras config is saved with the model, so a `.keras` file
loads without the preset.
"""
import keras
import numpy as np

HUB_PREFIX = "hub:"
HUB_WEIGHTS = ("imagenet", "preset")
_INSTALL_HINT = 'KerasHub backbones need the keras-hub package: pip install "tfdml[hub]".'


def is_hub_backbone(name):
    """Whether `name` names a KerasHub preset ("hub:<preset>")."""
    return isinstance(name, str) and name.startswith(HUB_PREFIX) and len(name) > len(HUB_PREFIX)


def _keras_hub():
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return keras_hub


def build_hub_backbone(name, input_shape, weights=None, config=None):
    """The KerasHub backbone of `name` ("hub:<preset>") for images of `input_shape`.

    Args:
        name: "hub:" followed by a KerasHub preset name, handle or directory.
        input_shape: (H, W, 3) of the preprocessed images.
        weights: None (random), "imagenet" / "preset" (the preset's weights)
            or a Keras `.weights.h5` file of the same backbone.
        config: a serialised backbone (from a saved model): rebuilt from it,
            without reading the preset.

    Returns:
        The backbone, a `keras.Model` from images to tokens or a pooled vector.
    """
    if config is not None:
        backbone = keras.saving.deserialize_keras_object(config)
    else:
        preset = name[len(HUB_PREFIX):]
        backbone = _keras_hub().models.Backbone.from_preset(preset, load_weights=weights in HUB_WEIGHTS)
        # Image-text presets (CLIP, SigLIP) hold both towers: the image tower is the backbone.
        backbone = getattr(backbone, "vision_encoder", backbone)
        if tuple(backbone.inputs[0].shape[1:]) != tuple(input_shape):
            raise ValueError(f"backbone {name!r} takes images of {tuple(backbone.inputs[0].shape[1:])}, but "
                             f"input_shape is {tuple(input_shape)}: set the input shape (dataset.image_size) to the "
                             "preset's.")
    if weights is not None and weights not in HUB_WEIGHTS:
        if not str(weights).endswith(".weights.h5"):
            raise ValueError(f"weights={weights!r} for backbone {name!r}: use None, 'imagenet' (the preset's "
                             "weights) or a Keras .weights.h5 file.")
        backbone.load_weights(weights)
    return backbone


def hub_preprocessing(name, config=None):
    """(scale, offset) per channel of the preset's `ImageConverter` for inputs in 0–255 (x / 255 without one)."""
    if config is not None:
        return config
    preset = name[len(HUB_PREFIX):]
    try:
        converter = _keras_hub().layers.ImageConverter.from_preset(preset)
    except FileNotFoundError:
        return [1.0 / 255.0] * 3, [0.0] * 3
    scale = np.broadcast_to(np.asarray(1.0 if converter.scale is None else converter.scale, "float64"), (3,))
    offset = np.broadcast_to(np.asarray(0.0 if converter.offset is None else converter.offset, "float64"), (3,))
    return [float(v) for v in scale], [float(v) for v in offset]


def hub_pooling_layer(features, pooling):
    """The "pool" tap of a KerasHub backbone's output `features` (tokens or a pooled vector)."""
    if len(features.shape) == 2:
        return keras.layers.Identity(name="pool")
    if len(features.shape) != 3:
        raise ValueError(f"KerasHub backbone output of shape {tuple(features.shape)}: expected tokens (batch, "
                         "tokens, dim) or a pooled vector (batch, dim).")
    if pooling == "cls":
        return ClassToken(name="pool")
    return (keras.layers.GlobalAveragePooling1D if pooling == "avg" else keras.layers.GlobalMaxPooling1D)(name="pool")


@keras.saving.register_keras_serializable(package="tfdml")
class ClassToken(keras.layers.Layer):
    """The first token of a (batch, tokens, dim) sequence: a ViT's class token."""

    def call(self, tokens):
        """The first token of `tokens` (B, T, D): the class token (B, D)."""
        return tokens[:, 0, :]

    def compute_output_shape(self, input_shape):
        """(B, D) for token input shape (B, T, D)."""
        return (input_shape[0], input_shape[-1])
