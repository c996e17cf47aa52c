"""BN-Inception (Ioffe & Szegedy, "Batch Normalization", ICML 2015) in pretrainedmodels' layout.

The Inception network with batch normalisation of Ioffe & Szegedy (Figure 5 of
the paper), as defined by pretrainedmodels' `BNInception` (a port of the Caffe
model), so its ImageNet state dict loads tensor for tensor (`SPEC.torch_layers`):

- every convolution has a bias and is followed by BatchNormalization
  (PyTorch's ε = 1e-5) and ReLU;
- the "5×5" branch is two stacked 3×3 convolutions (`double_3x3_1`,
  `double_3x3_2`); blocks 3c and 4e reduce the resolution (stride-2 3×3
  convolutions and a stride-2 max pool, no 1×1 branch, no pool projection);
- the fourth branch of the other blocks is a 3×3 stride-1 average pool with
  padding 1 counting the zero padding (PyTorch's `count_include_pad=True`,
  reproduced by explicit zero padding and a "valid" pool) — a max pool in
  block 5b — followed by a 1×1 projection;
- max pools use PyTorch's `ceil_mode=True`: the stride-2 pools pad one zero row /
  column at the bottom / right before a "valid" pool, which is exact because
  their inputs are ReLU outputs (≥ 0).

The output is the inception-5b feature map with 1024 channels ((7, 7, 1024) at
224 px), pretrainedmodels' `features()`. Layer names are pretrainedmodels'
module names (`conv1_7x7_s2`, `conv1_7x7_s2_bn`, `conv1_relu_7x7`, …,
`inception_3a_double_3x3_1`, …); a block's concatenation is
`inception_3a_output`. Preprocessing: `PixelPreprocessing` mode "bninception"
(RGB → BGR in [0, 255] minus the mean (104, 117, 128)).
"""
import keras

from tfdml.models.backbone_spec import BackboneSpec

BATCHNORM_EPSILON = 1e-5
BATCHNORM_MOMENTUM = 0.9  # PyTorch momentum 0.1
# Per block: (1x1, 3x3 reduce, 3x3, double 3x3 reduce, double 3x3, pool, pool proj); blocks with
# 1x1 = None reduce the resolution (stride-2 3x3 convolutions, stride-2 max pool, no projection).
INCEPTION_BLOCKS = {
    "3a": (64, 64, 64, 64, 96, "avg", 32),
    "3b": (64, 64, 96, 64, 96, "avg", 64),
    "3c": (None, 128, 160, 64, 96, "max", None),
    "4a": (224, 64, 96, 96, 128, "avg", 128),
    "4b": (192, 96, 128, 96, 128, "avg", 128),
    "4c": (160, 128, 160, 128, 160, "avg", 128),
    "4d": (96, 128, 192, 160, 192, "avg", 128),
    "4e": (None, 128, 192, 192, 256, "max", None),
    "5a": (352, 192, 320, 160, 224, "avg", 128),
    "5b": (352, 192, 320, 192, 224, "max", 128),
}


def _conv_bn_relu(x, filters, size, name, relu_name, strides=1):
    if strides == 1:
        x = keras.layers.Conv2D(filters, size, padding="same", name=name)(x)
    else:
        x = keras.layers.ZeroPadding2D(size // 2, name=f"{name}_pad")(x)
        x = keras.layers.Conv2D(filters, size, strides=strides, name=name)(x)
    x = keras.layers.BatchNormalization(epsilon=BATCHNORM_EPSILON, momentum=BATCHNORM_MOMENTUM,
                                        name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=relu_name)(x)


def _unit(x, filters, size, prefix, unit, strides=1):
    """`{prefix}_{unit}` convolution, its `_bn` and the ReLU `{prefix}_relu_{unit}` (pretrainedmodels' names)."""
    return _conv_bn_relu(x, filters, size, f"{prefix}_{unit}", f"{prefix}_relu_{unit}", strides)


def _ceil_max_pool(x, name):
    """PyTorch `MaxPool2d(3, stride=2, ceil_mode=True)` of a non-negative input."""
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name=name)(x)


def _inception(x, block, widths):
    c1, c3r, c3, d3r, d3, pool, proj = widths
    prefix = f"inception_{block}"
    strides = 2 if c1 is None else 1
    branches = [] if c1 is None else [_unit(x, c1, 1, prefix, "1x1")]
    branches.append(_unit(_unit(x, c3r, 1, prefix, "3x3_reduce"), c3, 3, prefix, "3x3", strides))
    double = _unit(_unit(x, d3r, 1, prefix, "double_3x3_reduce"), d3, 3, prefix, "double_3x3_1")
    branches.append(_unit(double, d3, 3, prefix, "double_3x3_2", strides))
    if strides == 2:
        branches.append(_ceil_max_pool(x, f"{prefix}_pool"))
    else:
        if pool == "avg":  # count_include_pad=True: the zero padding counts in every 3x3 mean
            padded = keras.layers.ZeroPadding2D(1, name=f"{prefix}_pool_pad")(x)
            pooled = keras.layers.AveragePooling2D(3, strides=1, name=f"{prefix}_pool")(padded)
        else:
            pooled = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{prefix}_pool")(x)
        branches.append(_unit(pooled, proj, 1, prefix, "pool_proj"))
    return keras.layers.Concatenate(name=f"{prefix}_output")(branches)


def _stage3_side(side):
    """Side of the inception-3a input (28 at 224 px): conv1 (floor) and two ceil-mode max pools."""
    side = (side - 1) // 2 + 1
    for _ in range(2):
        side = -(-(side - 3) // 2) + 1
    return side


def _check_input_size(input_shape):
    # Blocks 3c and 4e concatenate stride-2 convolutions (floor) with ceil-mode pools: the branches agree only
    # when the stage-3 side is a multiple of 4, as in pretrainedmodels (whose torch.cat fails otherwise).
    for side in input_shape[:2]:
        if side is not None and (_stage3_side(side) < 4 or _stage3_side(side) % 4):
            raise ValueError(
                f"bninception: input side {side} gives a {_stage3_side(side)}-px stage 3, where the branches of "
                "blocks 3c / 4e disagree in size (as in the reference implementation); use a side in "
                "32k - 1 … 32k + 6, e.g. 32, 64, 224 or 227.")


def bninception(input_shape=(224, 224, 3), name="bninception"):
    """BN-Inception feature extractor in pretrainedmodels' layout (no classifier, no pooling).

    Args:
        input_shape: (H, W, C) of the preprocessed images (mode "bninception":
            BGR in [0, 255] minus the mean). H and W must be in 32k − 1 … 32k + 6
            (e.g. 32, 64, 224, 227), like pretrainedmodels' definition.
        name: model name.

    Returns:
        A `keras.Model` from images to the inception-5b map ((7, 7, 1024) at 224 or 227 px).

    Raises:
        ValueError: an input size whose reduction blocks cannot concatenate their branches.
    """
    _check_input_size(input_shape)
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, 64, 7, "conv1_7x7_s2", "conv1_relu_7x7", strides=2)
    x = _ceil_max_pool(x, "pool1_3x3_s2")
    x = _conv_bn_relu(x, 64, 1, "conv2_3x3_reduce", "conv2_relu_3x3_reduce")
    x = _conv_bn_relu(x, 192, 3, "conv2_3x3", "conv2_relu_3x3")
    x = _ceil_max_pool(x, "pool2_3x3_s2")
    for block, widths in INCEPTION_BLOCKS.items():
        x = _inception(x, block, widths)
    return keras.Model(inputs, x, name=name)


def torch_layers(model):
    """{Keras layer name: pretrainedmodels module name}: the identity on every convolution and BatchNormalization.

    Args:
        model: a `bninception` model.

    Returns:
        A dict such as {"conv1_7x7_s2": "conv1_7x7_s2", "conv1_7x7_s2_bn": "conv1_7x7_s2_bn", …}.
    """
    kinds = (keras.layers.Conv2D, keras.layers.BatchNormalization)
    return {layer.name: layer.name for layer in model.layers if isinstance(layer, kinds)}


# Blocks end where the resolution changes (as GoogLeNet's): conv1 (112 px at 224), conv2 (56),
# inception 3b (28), inception 4d (14), inception 5b (7).
SPEC = BackboneSpec(bninception, preprocessing="bninception",
                    block_layers=("conv1_relu_7x7", "conv2_relu_3x3", "inception_3b_output", "inception_4d_output",
                                  "inception_5b_output"),
                    torch_layers=torch_layers, torch_ignored=("last_linear.",))
