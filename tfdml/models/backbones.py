"""Backbone construction: tfdml's reference-layout backbones, keras.applications and the small CNN.

tfdml's own backbones (`googlenet`, `bninception`, `resnet18`, `resnet50`,
`vgg16_bn`) follow the layouts of the PyTorch definitions the papers used
(torchvision, pretrainedmodels), so the published ImageNet checkpoints load into
them tensor for tensor. The keras.applications networks are available under
names that say so (`keras_resnet50`, `keras_mobilenet_v2`, …).
"""
import keras

from tfdml.models import bninception as _bninception
from tfdml.models import googlenet as _googlenet
from tfdml.models import resnet as _resnet
from tfdml.models import small_cnn as _small_cnn
from tfdml.models import vgg16_bn as _vgg16_bn
from tfdml.weights import load, sources

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
    "resnet18": _resnet.RESNET18_SPEC,
    "resnet50": _resnet.RESNET50_SPEC,
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


def preprocessing_mode(name, weights=None):
    """The `PixelPreprocessing` mode a backbone expects: its weights source's (when `weights` names a published
    source with its own, e.g. gluoncv's GoogLeNet), else the backbone's default."""
    check_backbone(name)
    if name in _CUSTOM:
        source = _named_source(name, weights)
        if source is not None and source.preprocessing is not None:
            return source.preprocessing
        return _CUSTOM[name].preprocessing
    return _APPLICATIONS[name][1]


def _named_source(name, weights):
    if not load.names_a_source(weights):
        return None
    try:
        return sources.resolve_source(name, weights)
    except ValueError:  # reported with the weights when the backbone is built
        return None


def block_layer_names(name):
    """Names of the backbone layers ending each block (tap "block{k}" is the k-th); () if undefined."""
    check_backbone(name)
    return _CUSTOM[name].block_layers if name in _CUSTOM else _APPLICATION_BLOCK_LAYERS.get(name, ())


def backbone_spec(name):
    """The `BackboneSpec` of one of tfdml's own backbones (None for a keras.applications one)."""
    check_backbone(name)
    return _CUSTOM.get(name)


def check_backbone(name):
    """Returns `name` if it is a known backbone; raises `ValueError` listing the valid names otherwise."""
    if name not in _APPLICATIONS and name not in _CUSTOM:
        raise ValueError(f"Unknown backbone={name!r}; valid names: {', '.join(backbone_names())}.")
    return name


def build_backbone(name, input_shape, weights=None):
    """Builds a backbone feature extractor (no classifier head, no pooling).

    Args:
        name: a name from `backbone_names()`.
        input_shape: (H, W, C) of the (preprocessed) input.
        weights: None (random initialisation); "imagenet" (tfdml's backbones:
            the published checkpoint their paper used, see `tfdml.weights`;
            keras_* backbones: keras.applications' download); a source name
            from `tfdml.weights.source_names()`; a PyTorch / safetensors
            checkpoint file (`.pth`, `.pt`, `.bin`, `.ckpt`, `.safetensors`,
            converted on load); or a Keras `.weights.h5` file of the same
            architecture.

    Returns:
        A `keras.Model` mapping preprocessed images to a feature map.

    Raises:
        ValueError: unknown name, or weights that do not fit the backbone;
            FileNotFoundError: missing weights file;
            tfdml.weights.StateDictMismatchError: a checkpoint with a missing,
            extra or mis-shaped tensor; tfdml.weights.WeightsDownloadError: a
            published checkpoint that cannot be fetched or fails its checksum.
    """
    check_backbone(name)
    if name in _CUSTOM:
        spec = _CUSTOM[name]
        model = spec.constructor(input_shape)
        if weights is None:
            return model
        if load.names_a_source(weights):
            load.load_source(model, spec, name, weights)
        elif load.is_checkpoint_path(weights):
            load.load_checkpoint(model, spec, weights, name)
        else:
            load.load_keras_weights(model, weights)
        return model
    local = weights is not None and weights != "imagenet"
    if local and load.names_a_source(weights):
        raise ValueError(f"weights={weights!r} is a checkpoint for tfdml's own backbones, not for {name!r}.")
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
        load.load_keras_weights(model, weights)
    return model
