"""Backbone construction: tfdml's reference-layout backbones, keras.applications and the small CNN.

tfdml's own backbones (`googlenet`, `bninception`, `resnet18`, `resnet50`,
`vgg16_bn`) follow the layouts of the PyTorch definitions the papers used
(torchvision, pretrainedmodels), so the published ImageNet checkpoints load into
them tensor for tensor. The keras.applications networks are available under
names that say so (`keras_resnet50`, `keras_mobilenet_v2`, …).
"""
import os

import keras

from tfdml.models import bninception as _bninception
from tfdml.models import googlenet as _googlenet
from tfdml.models import resnet18 as _resnet18
from tfdml.models import small_cnn as _small_cnn
from tfdml.models import vgg16_bn as _vgg16_bn

# keras.applications constructors by lower-case name (prefixed "keras_"), with their preprocessing mode.
_APPLICATIONS = {f"keras_{name}": spec for name, spec in {
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
}.items()}
# tfdml's own backbones by name.
_CUSTOM = {
    "googlenet": _googlenet.SPEC,
    "bninception": _bninception.SPEC,
    "vgg16_bn": _vgg16_bn.SPEC,
    "resnet18": _resnet18.SPEC,
    "small_cnn": _small_cnn.SPEC,
}

# Per keras.applications backbone, the layer ending each block (stage) at its resolution, from the input
# outwards: the outputs Vo & Hays (Fig. 2) global-max-pool to compare layers.
_APPLICATION_BLOCK_LAYERS = {
    "keras_resnet50": ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    "keras_resnet101": ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block23_out",
                        "conv5_block3_out"),
    "keras_resnet152": ("conv1_relu", "conv2_block3_out", "conv3_block8_out", "conv4_block36_out",
                        "conv5_block3_out"),
    "keras_vgg16": ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"),
    "keras_vgg19": ("block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4"),
}


def backbone_names():
    """All accepted backbone names."""
    return sorted(list(_APPLICATIONS) + list(_CUSTOM))


def preprocessing_mode(name):
    """The `PixelPreprocessing` mode a backbone expects."""
    check_backbone(name)
    return _CUSTOM[name].preprocessing if name in _CUSTOM else _APPLICATIONS[name][1]


def block_layer_names(name):
    """Names of the backbone layers ending each block (tap "block{k}" is the k-th); () if undefined."""
    check_backbone(name)
    return _CUSTOM[name].block_layers if name in _CUSTOM else _APPLICATION_BLOCK_LAYERS.get(name, ())


def backbone_spec(name):
    """The `BackboneSpec` of one of tfdml's own backbones (None for a keras.applications one)."""
    check_backbone(name)
    return _CUSTOM.get(name)


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
        model = _CUSTOM[name].constructor(input_shape)
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
