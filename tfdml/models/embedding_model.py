"""EmbeddingModel: backbone → pooling ("pool" tap) → fc ("fc" tap) → [fc2, fc3] → L2."""
import keras

from tfdml.models.backbones import build_backbone, check_backbone, preprocessing_mode
from tfdml.models.layers import L2Normalization, PixelPreprocessing

POOLINGS = ("avg", "max")
#: The tap used when none is named (embedders, training taps, export, evaluation).
DEFAULT_TAP = "fc"


@keras.saving.register_keras_serializable(package="tfdml")
class EmbeddingModel(keras.Model):
    """Image embedding model with selectable taps (Vo & Hays).

    Raw RGB images in [0, 255] go in; pixel preprocessing is part of the model, so
    the model, its embedders and exported SavedModels all take the same input.
    Architecture: preprocessing → backbone → global pooling (tap "pool") → Dense
    embedding (tap "fc", Glorot/Xavier init as in the EE paper) → `extra_fc`
    more Dense layers `fc2`, `fc3`, … each after a ReLU (Vo & Hays NetE/NetF) →
    L2 normalisation when `normalize`. The loss sees the last layer.

    Args:
        backbone: a `tfdml.models.backbone_names()` entry.
        embedding_dim: width of the fc layers.
        pooling: "avg" or "max" global pooling.
        extra_fc: number of extra fc layers after "fc".
        normalize: L2-normalise the output.
        freeze_batchnorm: keep all BatchNormalization layers of the backbone
            fixed: parameters not trained, statistics not updated (Roth et al.).
        weights: backbone weights: None, "imagenet" or a local file path.
        input_shape: (H, W, 3) of the input images.
    """

    def __init__(self, backbone="resnet50", embedding_dim=512, pooling="avg", extra_fc=0, normalize=True,
                 freeze_batchnorm=False, weights=None, input_shape=(224, 224, 3), name=None, **kwargs):
        check_backbone(backbone)
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}.")
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling={pooling!r}; expected one of {POOLINGS}.")
        if isinstance(extra_fc, bool) or not isinstance(extra_fc, int) or extra_fc < 0:
            raise ValueError(f"extra_fc must be a non-negative int, got {extra_fc!r}.")
        input_shape = tuple(int(v) for v in input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}.")
        inputs = keras.Input(input_shape)
        features = PixelPreprocessing(preprocessing_mode(backbone), name="preprocessing")(inputs)
        trunk = build_backbone(backbone, input_shape, weights)
        if freeze_batchnorm:
            for layer in trunk._flatten_layers():
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        features = trunk(features)
        pool_layer = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
        tap_tensors = {"pool": pool_layer(name="pool")(features)}
        x = keras.layers.Dense(embedding_dim, kernel_initializer="glorot_uniform", name="fc")(tap_tensors["pool"])
        tap_tensors["fc"] = x
        for i in range(2, extra_fc + 2):
            x = keras.layers.ReLU(name=f"relu_fc{i}")(x)
            x = keras.layers.Dense(embedding_dim, kernel_initializer="glorot_uniform", name=f"fc{i}")(x)
            tap_tensors[f"fc{i}"] = x
        outputs = L2Normalization(name="l2_normalize")(x) if normalize else x
        super().__init__(inputs=inputs, outputs=outputs, name=name or f"embedding_{backbone}", **kwargs)
        self._config = dict(backbone=backbone, embedding_dim=embedding_dim, pooling=pooling, extra_fc=extra_fc,
                            normalize=normalize, freeze_batchnorm=freeze_batchnorm,
                            weights=weights, input_shape=input_shape)
        self._tap_tensors = tap_tensors
        self.embedding_dim = embedding_dim

    @property
    def taps(self):
        """Names of the available taps, from the backbone outwards."""
        return list(self._tap_tensors)

    def embedder(self, tap=DEFAULT_TAP):
        """A `keras.Model` from raw images to the L2-normalised `tap` output.

        The embedder shares this model's layers (and weights).
        """
        if tap not in self._tap_tensors:
            raise ValueError(f"Unknown tap={tap!r}; available taps: {self.taps}.")
        outputs = L2Normalization(name=f"{tap}_l2")(self._tap_tensors[tap])
        return keras.Model(self.inputs[0], outputs, name=f"{self.name}_{tap}_embedder")

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """`keras.Model.compile`; also attaches a tfdml loss's trainable state."""
        if loss is not None and getattr(loss, "state_layer", None) is not None:
            from tfdml.losses import attach_loss_state

            attach_loss_state(self, loss, self.embedding_dim)
        return super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def get_compile_config(self):
        return super().get_compile_config()

    def compile_from_config(self, config):
        """Restores the compile state of a saved model (through `compile` above)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        return {**self._config, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("weights") == "imagenet":
            config["weights"] = None  # weights are restored from the saved file, not downloaded
        return cls(**config)
