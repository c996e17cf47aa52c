"""ResNet-18 and ResNet-50 in torchvision's layout.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.

Not `keras.applications.ResNet50` (that one is `keras_resnet50`). Both follow
torchvision's definitions so that its ImageNet checkpoints (and
pretrainedmodels', which are the same tensors) port layer by layer:

- convolutions have no bias; BatchNormalization uses PyTorch's ε = 1e-5;
- padding is explicit and symmetric (`ZeroPadding2D` then a "valid"
  convolution), as PyTorch pads, so odd input sizes give the same maps;
- the stem is a 7×7/2 convolution and a 3×3/2 max pooling with padding 1;
- a stage's first block downsamples with stride 2 (stages conv3_x … conv5_x)
  and has a 1×1 projection shortcut (option B) wherever the stride or the
  width changes.

ResNet-18 uses basic blocks (two 3×3 convolutions), two per stage, 64, 128,
256, 512 channels (Xuan et al.'s backbone). ResNet-50 uses bottleneck blocks
(1×1 reduce, 3×3, 1×1 expand ×4), 3/4/6/3 per stage, 256 … 2048 output
channels. It is **ResNet v1.5**: torchvision's ResNet-50 puts the stride in the
3×3 convolution; the paper and keras.applications put it in the first 1×1.

Layer names follow `keras.applications.ResNet50`: `conv1_conv`, `conv1_bn`,
`conv1_relu`, `pool1_pool`, then per block `conv{S}_block{B}_{i}_conv` /
`_bn` / `_relu` (i = 1, 2[, 3]), the projection `conv{S}_block{B}_0_conv` /
`_0_bn`, `conv{S}_block{B}_add` and `conv{S}_block{B}_out`.
"""
import re

import keras

from tfdml.models.backbone_spec import BackboneSpec

STAGE_PLANES = (64, 128, 256, 512)  # torchvision's `planes` of layer1 … layer4
BOTTLENECK_EXPANSION = 4
BATCHNORM_EPSILON = 1e-5  # PyTorch's default, for exact ported weights
BATCHNORM_MOMENTUM = 0.9  # PyTorch's momentum 0.1 in Keras' convention


def _conv_bn(x, filters, size, strides, name, relu=True):
    pad = size // 2
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(filters, size, strides=strides, use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCHNORM_EPSILON, momentum=BATCHNORM_MOMENTUM,
                                        name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _shortcut(x, filters, strides, name):
    if strides != 1 or x.shape[-1] != filters:
        return _conv_bn(x, filters, 1, strides, f"{name}_0", relu=False)
    return x


def _merge(shortcut, residual, name):
    x = keras.layers.Add(name=f"{name}_add")([shortcut, residual])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def _basic_block(x, planes, strides, name):
    residual = _conv_bn(x, planes, 3, strides, f"{name}_1")
    residual = _conv_bn(residual, planes, 3, 1, f"{name}_2", relu=False)
    return _merge(_shortcut(x, planes, strides, name), residual, name)


def _bottleneck_block(x, planes, strides, name):
    width = planes * BOTTLENECK_EXPANSION
    residual = _conv_bn(x, planes, 1, 1, f"{name}_1")
    residual = _conv_bn(residual, planes, 3, strides, f"{name}_2")  # v1.5: the stride is here
    residual = _conv_bn(residual, width, 1, 1, f"{name}_3", relu=False)
    return _merge(_shortcut(x, width, strides, name), residual, name)


def _resnet(block, blocks_per_stage, input_shape, name):
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, 64, 7, 2, "conv1")
    # Zero padding equals PyTorch's -inf padding here: the input is a ReLU output (≥ 0).
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (planes, blocks) in enumerate(zip(STAGE_PLANES, blocks_per_stage), start=2):
        for index in range(1, blocks + 1):
            strides = 2 if index == 1 and stage > 2 else 1
            x = block(x, planes, strides, f"conv{stage}_block{index}")
    return keras.Model(inputs, x, name=name)


def resnet18(input_shape=(224, 224, 3), name="resnet18"):
    """ResNet-18 feature extractor (no classifier, no pooling).

    Trainable parameters: 11,176,512 (torchvision's 11,689,512 minus the
    1000-way classifier).

    Args:
        input_shape: (H, W, C) of the preprocessed images.
        name: model name.

    Returns:
        A `keras.Model` from images to the conv5_x map, (H/32, W/32, 512).
    """
    return _resnet(_basic_block, (2, 2, 2, 2), input_shape, name)


def resnet50(input_shape=(224, 224, 3), name="resnet50"):
    """ResNet-50 v1.5 feature extractor in torchvision's layout (no classifier, no pooling).

    Trainable parameters: 23,508,032 (torchvision's 25,557,032 minus the
    2048→1000 classifier).

    Args:
        input_shape: (H, W, C) of the preprocessed images.
        name: model name.

    Returns:
        A `keras.Model` from images to the conv5_x map, (H/32, W/32, 2048).
    """
    return _resnet(_bottleneck_block, (3, 4, 6, 3), input_shape, name)


_BLOCK_LAYER = re.compile(r"conv(\d)_block(\d+)_(\d)_(conv|bn)")


def torch_layers(model):
    """Keras layer names → torchvision module names for `tfdml.weights.convert.assign_state_dict`.

    `conv1_conv` → `conv1`, `conv1_bn` → `bn1`, `conv{S}_block{B}_{i}_conv` /
    `_bn` → `layer{S-1}.{B-1}.conv{i}` / `.bn{i}`, the projection
    `conv{S}_block{B}_0_conv` / `_0_bn` → `layer{S-1}.{B-1}.downsample.0` / `.1`.

    Args:
        model: a `resnet18` or `resnet50` model.

    Returns:
        A dict {Keras layer name: PyTorch module prefix} over all its
        convolutions and BatchNormalization layers.
    """
    mapping = {}
    for layer in model.layers:
        if layer.name in ("conv1_conv", "conv1_bn"):
            mapping[layer.name] = "conv1" if layer.name == "conv1_conv" else "bn1"
            continue
        match = _BLOCK_LAYER.fullmatch(layer.name)
        if match is None:
            continue
        stage, block, index, kind = int(match[1]), int(match[2]), int(match[3]), match[4]
        prefix = f"layer{stage - 1}.{block - 1}"
        if index == 0:
            mapping[layer.name] = f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
        else:
            mapping[layer.name] = f"{prefix}.{kind}{index}"
    return mapping


# torchvision names the classifier `fc`; pretrainedmodels renames it `last_linear`.
TORCH_IGNORED = ("fc.", "last_linear.")

RESNET18_SPEC = BackboneSpec(
    resnet18, preprocessing="torch",
    block_layers=("conv1_relu", "conv2_block2_out", "conv3_block2_out", "conv4_block2_out", "conv5_block2_out"),
    torch_layers=torch_layers, torch_ignored=TORCH_IGNORED)
RESNET50_SPEC = BackboneSpec(
    resnet50, preprocessing="torch",
    block_layers=("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    torch_layers=torch_layers, torch_ignored=TORCH_IGNORED)
