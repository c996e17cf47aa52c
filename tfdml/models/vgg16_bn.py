"""VGG16 with batch normalisation (Simonyan & Zisserman 2015, config D + BN), Vo & Hays' backbone.

Not in `keras.applications`. The layer layout follows torchvision's `vgg16_bn`
`features` (3×3 convolutions with bias, each followed by BatchNormalization and
ReLU; 2×2 max pooling between blocks; BN ε = 1e-5), so its ImageNet weights can be
ported layer by layer into a `.weights.h5` file. Trainable parameters:
14,723,136 (torchvision's 138,365,992 minus the three classifier layers).

The output is the ReLU of conv5_3 (the fifth block's max pooling is left out):
global max pooling of it is Vo & Hays' "pool5.3" feature.
"""
import keras

from tfdml.models.backbone_spec import BackboneSpec

# Output channels of the convolutions of each block (VGG configuration D).
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
BATCHNORM_EPSILON = 1e-5  # PyTorch's default, for exact ported weights
BATCHNORM_MOMENTUM = 0.9  # PyTorch's momentum 0.1 in Keras' convention


def vgg16_bn(input_shape=(224, 224, 3), name="vgg16_bn"):
    """VGG16-BN feature extractor (no classifier, no final pooling).

    Layer names: `conv{b}_{i}` (convolution), `conv{b}_{i}_bn`, `conv{b}_{i}_relu`
    and `pool{b}` for blocks b = 1..5 (no `pool5`).

    Args:
        input_shape: (H, W, C) of the preprocessed images.
        name: model name.

    Returns:
        A `keras.Model` from images to the conv5_3 ReLU map, (H/16, W/16, 512).
    """
    inputs = keras.Input(input_shape)
    x = inputs
    for block, widths in enumerate(VGG16_BLOCKS, start=1):
        if block > 1:
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"pool{block - 1}")(x)
        for index, width in enumerate(widths, start=1):
            prefix = f"conv{block}_{index}"
            x = keras.layers.Conv2D(width, 3, padding="same", name=prefix)(x)
            x = keras.layers.BatchNormalization(epsilon=BATCHNORM_EPSILON, momentum=BATCHNORM_MOMENTUM,
                                                name=f"{prefix}_bn")(x)
            x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
    return keras.Model(inputs, x, name=name)


def torch_layers(model):
    """Keras layer names → torchvision `vgg16_bn` module names for `tfdml.weights.convert.assign_state_dict`.

    torchvision's `features` is one `Sequential`: each convolution k is followed
    by its BatchNorm (k + 1) and ReLU (k + 2), each block by a max pooling, so
    `conv{b}_{i}` → `features.{k}` and `conv{b}_{i}_bn` → `features.{k+1}`
    (conv1_1 → 0, conv2_1 → 7, …, conv5_3 → 40; `features.43` is the pool5
    that this model leaves out). Keras' "same" padding at stride 1 is
    PyTorch's padding 1 for a 3×3 kernel.

    Args:
        model: a `vgg16_bn` model (unused: the layout is fixed).

    Returns:
        A dict {Keras layer name: PyTorch module prefix} over the 13
        convolutions and their BatchNormalization layers.
    """
    del model
    mapping, index = {}, 0
    for block, widths in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, len(widths) + 1):
            mapping[f"conv{block}_{conv}"] = f"features.{index}"
            mapping[f"conv{block}_{conv}_bn"] = f"features.{index + 1}"
            index += 3  # convolution, BatchNorm, ReLU
        index += 1  # max pooling
    return mapping


SPEC = BackboneSpec(vgg16_bn, preprocessing="torch",
                    block_layers=("conv1_2_relu", "conv2_2_relu", "conv3_3_relu", "conv4_3_relu", "conv5_3_relu"),
                    torch_layers=torch_layers, torch_ignored=("classifier.",))
