"""A small CNN backbone for small images (digits, tests): fast on CPU."""
import keras

from tfdml.models.backbone_spec import BackboneSpec


def small_cnn(input_shape=(32, 32, 3), filters=(32, 64, 128), name="small_cnn"):
    """Conv–BN–ReLU blocks with 2×2 max pooling between them.

    Args:
        input_shape: (H, W, C) of preprocessed images (scaled to [0, 1]).
        filters: channels of each block; spatial size halves after each but the last.

    Returns:
        A `keras.Model` mapping images to a (H', W', filters[-1]) feature map.
    """
    inputs = keras.Input(input_shape)
    x = inputs
    for i, width in enumerate(filters):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
        if i < len(filters) - 1:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    return keras.Model(inputs, x, name=name)


SPEC = BackboneSpec(small_cnn, preprocessing="unit",
                    block_layers=("relu1", "relu2", "relu3"))
