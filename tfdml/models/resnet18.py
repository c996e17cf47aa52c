"""ResNet-18 (He et al., CVPR 2016, Table 1), Xuan et al.'s backbone.

Not in `keras.applications`. Basic blocks (two 3×3 convolutions), two per stage
conv2_x … conv5_x with 64, 128, 256, 512 channels; a stage's first block
downsamples with stride 2 and a 1×1 projection shortcut (option B). Convolutions
have no bias; BatchNormalization uses PyTorch's ε = 1e-5. Padding is explicit and
symmetric (as in torchvision), so ImageNet weights port layer by layer into a
`.weights.h5` file. Trainable parameters: 11,176,512 (torchvision's 11,689,512
minus the 1000-way classifier). Layer names follow `keras.applications.ResNet50`
(`conv1_conv`, `conv2_block1_1_conv`, `conv2_block1_out`, …).
"""
import keras

from tfdml.models.backbone_spec import BackboneSpec

STAGE_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2
BATCHNORM_EPSILON = 1e-5
BATCHNORM_MOMENTUM = 0.9


def _conv_bn(x, filters, size, strides, name, relu=True):
    pad = size // 2
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(filters, size, strides=strides, use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCHNORM_EPSILON, momentum=BATCHNORM_MOMENTUM,
                                        name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters, strides, name):
    residual = _conv_bn(x, filters, 3, strides, f"{name}_1")
    residual = _conv_bn(residual, filters, 3, 1, f"{name}_2", relu=False)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, f"{name}_0", relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, residual])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def resnet18(input_shape=(224, 224, 3), name="resnet18"):
    """ResNet-18 feature extractor (no classifier, no pooling).

    Args:
        input_shape: (H, W, C) of the preprocessed images.
        name: model name.

    Returns:
        A `keras.Model` from images to the conv5_x map, (H/32, W/32, 512).
    """
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, 64, 7, 2, "conv1")
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, width in enumerate(STAGE_WIDTHS, start=2):
        for block in range(1, BLOCKS_PER_STAGE + 1):
            strides = 2 if block == 1 and stage > 2 else 1
            x = _basic_block(x, width, strides, f"conv{stage}_block{block}")
    return keras.Model(inputs, x, name=name)


SPEC = BackboneSpec(resnet18, preprocessing="torch",
                    block_layers=("conv1_relu", "conv2_block2_out", "conv3_block2_out", "conv4_block2_out", "conv5_block2_out"))
