"""GoogLeNet / Inception v1 (Szegedy et al., CVPR 2015), the EE paper's backbone.

The original architecture without auxiliary classifiers and without batch
normalisation (local response normalisation is omitted, as in most re-trainable
ports). Filter counts follow Table 1 of the paper; the output is the 7×7×1024
inception-5b feature map for 224-px input.
"""
import keras

from tfdml.models.backbone_spec import BackboneSpec

# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) per inception block.
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


def _conv(x, filters, size, name, strides=1):
    return keras.layers.Conv2D(filters, size, strides=strides, padding="same", activation="relu",
                               name=name)(x)


def _inception(x, name, spec):
    c1, c3r, c3, c5r, c5, cp = spec
    branch1 = _conv(x, c1, 1, f"inception_{name}_1x1")
    branch3 = _conv(_conv(x, c3r, 1, f"inception_{name}_3x3_reduce"), c3, 3, f"inception_{name}_3x3")
    branch5 = _conv(_conv(x, c5r, 1, f"inception_{name}_5x5_reduce"), c5, 5, f"inception_{name}_5x5")
    pooled = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"inception_{name}_pool")(x)
    branch_pool = _conv(pooled, cp, 1, f"inception_{name}_pool_proj")
    return keras.layers.Concatenate(name=f"inception_{name}_output")([branch1, branch3, branch5, branch_pool])


def googlenet(input_shape=(224, 224, 3), name="googlenet"):
    """Inception v1 feature extractor (no classifier head).

    Returns:
        A `keras.Model` from images (already preprocessed) to the inception-5b
        feature map with 1024 channels.
    """
    inputs = keras.Input(input_shape)
    x = _conv(inputs, 64, 7, "conv1_7x7", strides=2)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = _conv(x, 64, 1, "conv2_3x3_reduce")
    x = _conv(x, 192, 3, "conv2_3x3")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    for block in ("3a", "3b"):
        x = _inception(x, block, INCEPTION_BLOCKS[block])
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool3")(x)
    for block in ("4a", "4b", "4c", "4d", "4e"):
        x = _inception(x, block, INCEPTION_BLOCKS[block])
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool4")(x)
    for block in ("5a", "5b"):
        x = _inception(x, block, INCEPTION_BLOCKS[block])
    return keras.Model(inputs, x, name=name)


SPEC = BackboneSpec(googlenet, preprocessing="torch",
                    block_layers=("conv1_7x7", "conv2_3x3", "inception_3b_output", "inception_4e_output", "inception_5b_output"))
