"""GoogLeNet / Inception v1 (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015) in torchvision's layout.

The EE paper's backbone. The layout is torchvision's `googlenet`, so its
ImageNet state dict loads tensor for tensor (`SPEC.torch_layers`); gluoncv's
`googlenet` (the source the EE authors used) has the same layout:

- every convolution is a "BasicConv2d": convolution without bias →
  BatchNormalization (ε = 1e-3) → ReLU;
- filter counts follow Table 1 of the paper, but the "5×5" branch uses a 3×3
  kernel (as in torchvision / gluoncv);
- no local response normalisation, no auxiliary classifiers;
- max pools use PyTorch's `ceil_mode=True`: the stride-2 pools pad one zero
  row / column at the bottom / right before a "valid" pool, which is exact
  because their inputs are ReLU outputs (≥ 0); the 3×3 stride-1 pool of each
  inception block's fourth branch (PyTorch padding 1, implicit −∞) is Keras'
  `padding="same"`.

The output is the inception-5b feature map with 1024 channels ((7, 7, 1024) at
224 px).

Preprocessing: torchvision's pretrained GoogLeNet uses `transform_input=True`,
which maps the ImageNet mean/std-normalised input back to x / 127.5 − 1 for RGB
pixels x in [0, 255]; that is `PixelPreprocessing` mode "tf" (`SPEC.preprocessing`).

Layer names: `conv1`, `conv2`, `conv3` and, per inception block
(`inception3a` … `inception5b`), `inception3a_branch1`, `inception3a_branch2a`
(3×3 reduce), `inception3a_branch2b`, `inception3a_branch3a` ("5×5" reduce),
`inception3a_branch3b`, `inception3a_branch4` (pool projection), each with
`_conv`, `_bn`, `_relu` layers; a block's concatenation is `inception3a_output`.
"""
import keras

from tfdml.models.backbone_spec import BackboneSpec

BATCHNORM_EPSILON = 1e-3
BATCHNORM_MOMENTUM = 0.9  # PyTorch momentum 0.1
# (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj) per inception block (Table 1).
INCEPTION_BLOCKS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
# Keras branch name → torchvision module path inside an inception block.
_BRANCHES = {"branch1": "branch1", "branch2a": "branch2.0", "branch2b": "branch2.1", "branch3a": "branch3.0",
             "branch3b": "branch3.1", "branch4": "branch4.1"}


def _basic_conv(x, filters, size, name, strides=1):
    if strides == 1:
        x = keras.layers.Conv2D(filters, size, padding="same", use_bias=False, name=f"{name}_conv")(x)
    else:
        x = keras.layers.ZeroPadding2D(size // 2, name=f"{name}_pad")(x)
        x = keras.layers.Conv2D(filters, size, strides=strides, use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCHNORM_EPSILON, momentum=BATCHNORM_MOMENTUM,
                                        name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _ceil_max_pool(x, size, name):
    """PyTorch `MaxPool2d(size, stride=2, ceil_mode=True)` of a non-negative input."""
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(size, strides=2, name=name)(x)


def _inception(x, name, widths):
    c1, c3r, c3, c5r, c5, cp = widths
    branch1 = _basic_conv(x, c1, 1, f"{name}_branch1")
    branch2 = _basic_conv(_basic_conv(x, c3r, 1, f"{name}_branch2a"), c3, 3, f"{name}_branch2b")
    branch3 = _basic_conv(_basic_conv(x, c5r, 1, f"{name}_branch3a"), c5, 3, f"{name}_branch3b")
    pooled = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_branch4_pool")(x)
    branch4 = _basic_conv(pooled, cp, 1, f"{name}_branch4")
    return keras.layers.Concatenate(name=f"{name}_output")([branch1, branch2, branch3, branch4])


def googlenet(input_shape=(224, 224, 3), name="googlenet"):
    """GoogLeNet feature extractor in torchvision's layout (no classifier, no pooling).

    Args:
        input_shape: (H, W, C) of the preprocessed images (mode "tf": x / 127.5 − 1).
        name: model name.

    Returns:
        A `keras.Model` from images to the inception-5b map ((7, 7, 1024) at 224 or 227 px).
    """
    inputs = keras.Input(input_shape)
    x = _basic_conv(inputs, 64, 7, "conv1", strides=2)
    x = _ceil_max_pool(x, 3, "maxpool1")
    x = _basic_conv(x, 64, 1, "conv2")
    x = _basic_conv(x, 192, 3, "conv3")
    x = _ceil_max_pool(x, 3, "maxpool2")
    for block in ("3a", "3b"):
        x = _inception(x, f"inception{block}", INCEPTION_BLOCKS[block])
    x = _ceil_max_pool(x, 3, "maxpool3")
    for block in ("4a", "4b", "4c", "4d", "4e"):
        x = _inception(x, f"inception{block}", INCEPTION_BLOCKS[block])
    x = _ceil_max_pool(x, 2, "maxpool4")
    for block in ("5a", "5b"):
        x = _inception(x, f"inception{block}", INCEPTION_BLOCKS[block])
    return keras.Model(inputs, x, name=name)


def torch_layers(model=None):
    """{Keras layer name: torchvision module prefix} of every convolution and BatchNormalization layer.

    Args:
        model: unused (the map is the same for every input size); accepted for
            the `BackboneSpec.torch_layers` signature.

    Returns:
        A dict such as {"conv1_conv": "conv1.conv", "inception3a_branch2b_bn": "inception3a.branch2.1.bn"}.
    """
    units = {unit: unit for unit in ("conv1", "conv2", "conv3")}
    for block in INCEPTION_BLOCKS:
        for branch, path in _BRANCHES.items():
            units[f"inception{block}_{branch}"] = f"inception{block}.{path}"
    return {f"{unit}_{kind}": f"{prefix}.{kind}" for unit, prefix in units.items() for kind in ("conv", "bn")}


SPEC = BackboneSpec(googlenet, preprocessing="tf",
                    block_layers=("conv1_relu", "conv3_relu", "inception3b_output", "inception4e_output",
                                  "inception5b_output"),
                    torch_layers=torch_layers, torch_ignored=("aux1.", "aux2.", "fc."))
