"""Backbone construction: keras.applications, GoogLeNet, VGG16-BN, ResNet-18 and the small CNN."""
import os

import keras

from tfdml.models.googlenet import googlenet
from tfdml.models.resnet18 import resnet18
from tfdml.models.small_cnn import small_cnn
from tfdml.models.vgg16_bn import vgg16_bn

# keras.applications constructors by lower-case name, with their preprocessing mode.
_APPLICATIONS = {
    "resnet50": ("ResNet50", "caffe"),
    "resnet101": ("ResNet101", "caffe"),
    "resnet152": ("ResNet152", "caffe"),
    "resnet50v2": ("ResNet50V2", "tf"),
    "resnet101v2": ("ResNet101V2", "tf"),
    "inception_v3": ("InceptionV3", "tf"),
    "inception_resnet_v2": ("InceptionResNetV2", "tf"),
    "xception": ("Xception", "tf"),
    "mobilenet": ("MobileNet", "tf"),
    "mobilenet_v2": ("MobileNetV2", "tf"),
    "mobilenet_v3_small": ("MobileNetV3Small", "none"),
    "mobilenet_v3_large": ("MobileNetV3Large", "none"),
    "densenet121": ("DenseNet121", "torch"),
    "densenet169": ("DenseNet169", "torch"),
    "densenet201": ("DenseNet201", "torch"),
    "vgg16": ("VGG16", "caffe"),
    "vgg19": ("VGG19", "caffe"),
    "convnext_tiny": ("ConvNeXtTiny", "none"),
    "convnext_small": ("ConvNeXtSmall", "none"),
    **{f"efficientnetb{i}": (f"EfficientNetB{i}", "none") for i in range(8)},
    **{f"efficientnetv2{s}": (f"EfficientNetV2{s.upper()}", "none") for s in ("b0", "b1", "b2", "b3", "s", "m", "l")},
}
# tfdml's own backbones: constructor and preprocessing mode ("torch": the ImageNet
# statistics their PyTorch weights were trained with).
_CUSTOM = {
    "googlenet": (googlenet, "torch"),
    "vgg16_bn": (vgg16_bn, "torch"),
    "resnet18": (resnet18, "torch"),
    "small_cnn": (small_cnn, "unit"),
}

# Per backbone, the layer ending each block (stage) at its resolution, from the input
# outwards: the outputs Vo & Hays (Fig. 2) global-max-pool to compare layers.
BLOCK_LAYERS = {
    "small_cnn": ("relu1", "relu2", "relu3"),
    "googlenet": ("conv1_7x7", "conv2_3x3", "inception_3b_output", "inception_4e_output", "inception_5b_output"),
    "vgg16_bn": ("conv1_2_relu", "conv2_2_relu", "conv3_3_relu", "conv4_3_relu", "conv5_3_relu"),
    "resnet18": ("conv1_relu", "conv2_block2_out", "conv3_block2_out", "conv4_block2_out", "conv5_block2_out"),
    "resnet50": ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    "resnet101": ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block23_out", "conv5_block3_out"),
    "resnet152": ("conv1_relu", "conv2_block3_out", "conv3_block8_out", "conv4_block36_out", "conv5_block3_out"),
    "vgg16": ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"),
    "vgg19": ("block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4"),
}


def backbone_names():
    """All accepted backbone names."""
    return sorted(list(_APPLICATIONS) + list(_CUSTOM))


def preprocessing_mode(name):
    """The `PixelPreprocessing` mode a backbone expects."""
    check_backbone(name)
    return _CUSTOM[name][1] if name in _CUSTOM else _APPLICATIONS[name][1]


def block_layer_names(name):
    """Names of the backbone layers ending each block (tap "block{k}" is the k-th); () if undefined."""
    check_backbone(name)
    return BLOCK_LAYERS.get(name, ())


def check_backbone(name):
    if name not in _APPLICATIONS and name not in _CUSTOM:
        raise ValueError(f"Unknown backbone={name!r}; valid names: {', '.join(backbone_names())}.")
    return name


def _load_local_weights(model, path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path!r} (expected a Keras .weights.h5 file).")
    model.load_weights(path)


def build_backbone(name, input_shape, weights=None):
    """Builds a backbone feature extractor (no classifier head, no pooling).

    Args:
        name: a name from `backbone_names()`.
        input_shape: (H, W, C) of the (preprocessed) input.
        weights: None (random init), "imagenet" (keras.applications download,
            needs network access) or a path to a local `.weights.h5` file saved
            from the same architecture.

    Returns:
        A `keras.Model` mapping preprocessed images to a feature map.

    Raises:
        ValueError: unknown name; RuntimeError: ImageNet weights could not be
            downloaded; FileNotFoundError: missing weights file.
    """
    check_backbone(name)
    local = weights not in (None, "imagenet")
    if name in _CUSTOM:
        if weights == "imagenet":
            raise ValueError(f"No ImageNet weights are distributed for {name!r}; pass weights=None or a "
                             "local .weights.h5 path.")
        model = _CUSTOM[name][0](input_shape)
    else:
        constructor = getattr(keras.applications, _APPLICATIONS[name][0])
        try:
            model = constructor(include_top=False, weights=None if local else weights, input_shape=input_shape)
        except Exception as error:  # network failures surface as many exception types
            if weights != "imagenet":
                raise
            raise RuntimeError(
                f"Could not load ImageNet weights for backbone {name!r} ({type(error).__name__}: {error}). "
                "Without network access use weights=None (random init) or weights='/path/to/file.weights.h5'."
            ) from error
    if local:
        _load_local_weights(model, weights)
    return model
