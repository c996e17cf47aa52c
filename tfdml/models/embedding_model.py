"""EmbeddingModel: backbone → pooling ("pool" tap) → fc layers (one tap each) → L2, plus block taps."""
import re

import keras

from tfdml.models.backbones import block_layer_names, build_backbone, check_backbone, preprocessing_mode
from tfdml.models.hub import build_hub_backbone, hub_pooling_layer, hub_preprocessing, is_hub_backbone
from tfdml.models.layers import RGB_MODES, GrayToRGB, L2Normalization, PixelPreprocessing
from tfdml.models.reinitialize import reinitialize_layers
from tfdml.sharing.objective import SharingObjective

POOLINGS = ("avg", "max", "avg_max")
"""Global pooling modes of the backbone's last feature map (`pooling=`): average, max, or their sum."""
#: KerasHub token backbones also pool by their class token.
HUB_POOLINGS = ("cls", "avg", "max")
_LAYER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESERVED_NAMES = ("pool", "preprocessing", "gray_to_rgb", "l2_normalize", "concat")
#: The tap used when none is named (embedders, training taps, export, evaluation).
DEFAULT_TAP = "fc"
"""The tap used when none is named (embedders, training taps, export, evaluation)."""


@keras.saving.register_keras_serializable(package="tfdml")
class EmbeddingModel(keras.Model):
    """Image embedding model with selectable taps (Vo & Hays).

    Raw images in [0, 255] go in; pixel preprocessing is part of the model, so the
    model, its embedders and exported SavedModels all take the same input.
    Architecture: preprocessing → backbone → global pooling (tap "pool") → fc
    layers (Dense, Glorot/Xavier init as in the EE paper; a ReLU before every fc
    but the first; each fc is a tap named after its layer) → L2 normalisation when
    `normalize`. The loss sees the last layer.

    fc layers are named by `fc_names`, or by default "fc", "fc2", "fc3", … for
    `extra_fc` extra layers. `embedding_dim=None` builds no fc at all: the loss
    sees the pooled feature (Vo & Hays NetD).

    Block taps "block1", "block2", … (`block_taps`) are the outputs of the
    backbone's blocks (stages), each global-max-pooled (Vo & Hays Fig. 2); they
    cost nothing in training and are reached through `embedder(tap)`. Defined for
    small_cnn, googlenet, bninception, vgg16_bn, resnet18, resnet50 and keras_resnet50/101/152, keras_vgg16/19
    (`tfdml.models.block_layer_names`).

    Channels: any `input_shape[-1]`. With `gray_to_rgb=None` (auto) a 1-channel
    (gray) input is repeated to 3 channels inside the model (layer
    "gray_to_rgb") when the backbone's preprocessing uses ImageNet RGB
    statistics ("caffe"/"torch": googlenet, vgg16_bn, resnet18, resnet50,
    densenet, vgg) or when pretrained `weights` are loaded (they expect RGB);
    otherwise the backbone's first layer takes the input's channels (e.g.
    small_cnn, or mobilenet with `weights=None`). The decision is saved in the
    config, so a reloaded model has the same architecture.

    Several heads (`heads={"class": 128, "shared": 128}`, Milbich et al.
    "Sharing Matters"): each head is a linear layer on the "pool" feature f,
    L2-normalised when `normalize`: φ_h = ℓ2(W_h f + b_h). The model then outputs
    a dict {head: φ_h}; the taps are "pool", one per head (its Dense output,
    named after the head) and "concat" = [φ_1; φ_2; …] (the normalised heads
    concatenated, two or more heads). Heads replace the fc layers (pass
    `embedding_dim=None`). Train a two-head model with
    `compile(loss=tfdml.sharing.SharingObjective(...))` (`train_step` then runs
    Algorithm 1 of the paper); the objective's regressor and loss state are
    attached to the model, never part of an embedder or export.

    Vo & Hays' networks (VGG16-BN, global max pooling of conv5_3 = "pool",
    `backbone="vgg16_bn", pooling="max", weights=<VGG16-BN ImageNet .weights.h5>`):
    NetA `fc_names=["fc6"]`; NetB NetA + `reinitialize=["conv5_3", "conv5_3_bn",
    "fc6"]`; NetD `embedding_dim=None`; NetE `fc_names=["fc6", "fc7"]`; NetF
    `fc_names=["fc6", "fc7", "fc8"]` (their code: 512 wide, ReLU between). NetC's
    definition was not available here (see README).

    KerasHub backbones (`backbone="hub:<preset>"`, e.g. "hub:dinov2_base";
    extra `hub`): ViT, DINOv2, CLIP / SigLIP image towers, `weights="imagenet"`
    for the preset's weights, `pooling="cls"` for the class token (see
    `tfdml.models.hub`); they have no block taps.

    Args:
        backbone: a `tfdml.models.backbone_names()` entry or "hub:<preset>".
        embedding_dim: width of every fc layer, or None for no fc layer.
        pooling: "avg" or "max" global pooling (the "pool" tap), or "avg_max",
            their sum (Kim et al.'s Proxy-Anchor code); KerasHub token backbones
            also "cls" (not "avg_max").
        extra_fc: number of fc layers after the first (ignored when `fc_names`
            is given, which then sets the count).
        normalize: L2-normalise the output.
        freeze_batchnorm: the backbone's BatchNormalization layers: False
            (trained as usual), True (fixed: γ/β not trained, moving statistics
            used and not updated — Keras' `trainable=False`) or "statistics"
            (moving statistics used and not updated, γ/β trained — Roth et
            al.'s code, PyTorch's `module.eval()` on every BN layer).
        weights: backbone weights: None (random), "imagenet" (the paper's
            published checkpoint, see `tfdml.weights`), a source name, a
            PyTorch / safetensors checkpoint file or a Keras `.weights.h5`.
        input_shape: (H, W, C) of the input images, any C (see Channels).
        fc_names: names of the fc layers and their taps, e.g. ["fc6", "fc7", "fc8"].
        reinitialize: names of layers (backbone or head) whose weights are drawn
            afresh after `weights` are loaded; all other layers keep theirs.
        gray_to_rgb: repeat a 1-channel input to RGB: None (auto, see
            Channels), True or False.
        heads: None, or a dict {head name: width} of linear heads on "pool"
            (see Several heads); needs `embedding_dim=None`.
        feature_dropout: dropout rate on the "pool" feature where it enters the
            fc layers or heads (training only; the "pool" tap stays clean).
        feature_noise: standard deviation of Gaussian noise added there
            ("input noise"; training only).
        embedding_noise: standard deviation of Gaussian noise added to the
            embedding (each head's output) before the L2 normalisation
            ("output noise"; training only). These three are the
            regularisation baselines of Milbich et al. (Sharing Matters,
            Table 6), against which sharing is compared.
        hub_config: set by saved models of KerasHub backbones (the serialised
            backbone and its preprocessing), so they load without the preset.
    """

    def __init__(self, backbone="resnet50", embedding_dim=512, pooling="avg", extra_fc=0, normalize=True,
                 freeze_batchnorm=False, weights=None, input_shape=(224, 224, 3), fc_names=None, reinitialize=(),
                 gray_to_rgb=None, heads=None, feature_dropout=0.0, feature_noise=0.0, embedding_noise=0.0,
                 hub_config=None, name=None, **kwargs):
        hub = is_hub_backbone(backbone)
        if not hub:
            check_backbone(backbone)
        if embedding_dim is not None and (isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int)
                                          or embedding_dim < 1):
            raise ValueError(f"embedding_dim must be a positive int or None (no fc layer), got {embedding_dim!r}.")
        if pooling not in (HUB_POOLINGS if hub else POOLINGS):
            raise ValueError(f"Unknown pooling={pooling!r}; expected one of {HUB_POOLINGS if hub else POOLINGS}.")
        if isinstance(extra_fc, bool) or not isinstance(extra_fc, int) or extra_fc < 0:
            raise ValueError(f"extra_fc must be a non-negative int, got {extra_fc!r}.")
        if isinstance(reinitialize, str):
            raise ValueError(f"reinitialize must be a list of layer names, got the string {reinitialize!r}.")
        input_shape = _check_input_shape(input_shape)
        mode = "affine" if hub else preprocessing_mode(backbone, weights)
        gray_to_rgb = _check_channels(input_shape, mode, weights, gray_to_rgb, backbone)
        inputs = keras.Input(input_shape)
        x = GrayToRGB(name="gray_to_rgb")(inputs) if gray_to_rgb else inputs
        trunk_shape = (*input_shape[:2], x.shape[-1])
        if hub:
            hub_config = hub_config or {}
            scale, offset = hub_preprocessing(backbone, hub_config.get("preprocessing"))
            features = PixelPreprocessing(mode, scale=scale, offset=offset, name="preprocessing")(x)
            trunk = build_hub_backbone(backbone, trunk_shape, weights, hub_config.get("backbone"))
            hub_config = {"backbone": keras.saving.serialize_keras_object(trunk), "preprocessing": [scale, offset]}
        else:
            features = PixelPreprocessing(mode, name="preprocessing")(x)
            trunk = build_backbone(backbone, trunk_shape, weights)
        fc_layers = _fc_names(fc_names, embedding_dim, extra_fc, trunk)
        heads = _check_heads(heads, embedding_dim, trunk)
        _freeze_batchnorm(trunk, freeze_batchnorm)
        trunk_output = trunk(features)
        if hub:
            x = hub_pooling_layer(trunk_output, pooling)(trunk_output)
        else:
            x = _global_pooling(trunk_output, pooling)
        tap_tensors = {"pool": x}
        _check_regularizers(feature_dropout, feature_noise, embedding_noise, fc_layers or heads)
        x = _feature_regularizers(x, feature_dropout, feature_noise)
        for index, fc_name in enumerate(fc_layers):
            if index:
                x = keras.layers.ReLU(name=f"relu_{fc_name}")(x)
            x = keras.layers.Dense(embedding_dim, kernel_initializer="glorot_uniform", name=fc_name)(x)
            tap_tensors[fc_name] = x
        if heads:
            outputs = _build_heads(x, heads, normalize, tap_tensors, embedding_noise)
        else:
            if embedding_noise:
                x = keras.layers.GaussianNoise(embedding_noise, name="embedding_noise")(x)
            outputs = L2Normalization(name="l2_normalize")(x) if normalize else x
        default_name = f"embedding_hub_{trunk.name}" if hub else f"embedding_{backbone}"
        super().__init__(inputs=inputs, outputs=outputs, name=name or default_name, **kwargs)
        self._config = dict(backbone=backbone, embedding_dim=embedding_dim, pooling=pooling, extra_fc=extra_fc,
                            normalize=normalize, freeze_batchnorm=freeze_batchnorm, weights=weights,
                            input_shape=input_shape, fc_names=None if fc_names is None else list(fc_names),
                            reinitialize=list(reinitialize), gray_to_rgb=gray_to_rgb, heads=heads,
                            feature_dropout=feature_dropout, feature_noise=feature_noise,
                            embedding_noise=embedding_noise, hub_config=hub_config if hub else None)
        self._tap_tensors = tap_tensors
        self._trunk_input = features
        self._trunk_name = trunk.name
        blocks = () if hub else block_layer_names(backbone)
        self._block_layers = {f"block{k}": layer for k, layer in enumerate(blocks, start=1)}
        #: Width of the single output; None for a multi-head model (see `heads`).
        self.embedding_dim = None if heads else int(x.shape[-1])
        if reinitialize:
            reinitialize_layers(self, reinitialize)

    @property
    def taps(self):
        """Names of the head taps ("pool", the fc layers or the heads and "concat"), from the backbone outwards."""
        return list(self._tap_tensors)

    @property
    def heads(self):
        """{head name: width} of a multi-head model, else None."""
        heads = self._config["heads"]
        return None if heads is None else dict(heads)

    @property
    def block_taps(self):
        """Names of the backbone block taps ("block1", … from the input outwards); [] if undefined."""
        return list(self._block_layers)

    def embedder(self, tap=DEFAULT_TAP):
        """A `keras.Model` from raw images to the L2-normalised `tap` output.

        `tap` is a head tap (`taps`) or a block tap (`block_taps`, the block's
        output global-max-pooled). The embedder shares this model's layers (and
        weights).
        """
        if tap in self._tap_tensors:
            features = self._tap_tensors[tap]
        elif tap in self._block_layers:
            features = self._block_feature(tap)
        else:
            raise ValueError(f"Unknown tap={tap!r}; available taps: {self.taps + self.block_taps}.")
        outputs = L2Normalization(name=f"{tap}_l2")(features)
        return keras.Model(self.inputs[0], outputs, name=f"{self.name}_{tap}_embedder")

    def _block_feature(self, tap):
        trunk = self.get_layer(self._trunk_name)
        layer = trunk.get_layer(self._block_layers[tap])
        to_block = keras.Model(trunk.inputs[0], layer.output, name=f"{trunk.name}_to_{tap}")
        return keras.layers.GlobalMaxPooling2D(name=f"{tap}_max_pool")(to_block(self._trunk_input))

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`; `shuffle` defaults to False for a `tf.data.Dataset`.

        A dataset is ordered by its own pipeline (tfdml's samplers build the
        batches); Keras' default `shuffle=True` would only be ignored with a
        warning.
        """
        import tensorflow as tf

        if isinstance(x, tf.data.Dataset) and len(args) < 6:  # shuffle is fit's 8th parameter
            kwargs.setdefault("shuffle", False)
        return super().fit(x, y, *args, **kwargs)

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """`keras.Model.compile`; also attaches a tfdml loss's trainable state.

        A multi-head model takes `loss=tfdml.sharing.SharingObjective(...)`
        (or None): the objective is attached to the model (attribute
        `tfdml_sharing`) and `train_step` / `test_step` run its two-batch step.
        """
        if self.heads:
            return self._compile_heads(optimizer, loss, **kwargs)
        if loss is not None and getattr(loss, "state_layer", None) is not None:
            from tfdml.losses import attach_loss_state

            attach_loss_state(self, loss, self.embedding_dim)
        return super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def _compile_heads(self, optimizer, loss, **kwargs):
        if loss is not None and not isinstance(loss, SharingObjective):
            raise ValueError(f"A model with heads={self.heads} trains with loss=tfdml.sharing.SharingObjective(...) "
                             f"(Sharing Matters); got loss={loss!r}. For a single embedding use embedding_dim / "
                             "fc_names instead of heads.")
        if loss is not None:
            loss.attach(self)
        super().compile(optimizer=optimizer, loss=None, **kwargs)
        self._sharing_objective = loss

    def train_step(self, data):
        """Keras' step, or `SharingObjective.train_step` for a multi-head model compiled with one."""
        objective = getattr(self, "_sharing_objective", None)
        return objective.train_step(self, data) if objective is not None else super().train_step(data)

    def test_step(self, data):
        """Keras' evaluation step with the loss's state frozen, or `SharingObjective.test_step` for a
        model compiled with one."""
        objective = getattr(self, "_sharing_objective", None)
        if objective is not None:
            return objective.test_step(self, data)
        from tfdml.losses.state import frozen_loss_state

        with frozen_loss_state(getattr(self, "loss", None)):
            return super().test_step(data)

    def get_compile_config(self):
        """Keras' compile config, with the `SharingObjective` as the loss of a model compiled with one."""
        config = super().get_compile_config()
        objective = getattr(self, "_sharing_objective", None)
        if config and objective is not None:
            config["loss"] = keras.saving.serialize_keras_object(objective)
        return config

    def compile_from_config(self, config):
        """Restores the compile state of a saved model (through `compile` above)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        """Config of this model: its constructor arguments and name (Keras serialisation)."""
        return {**self._config, "name": self.name}

    @classmethod
    def from_config(cls, config):
        """A model from `get_config`'s dict, built with `weights=None`: a loaded model takes its weights
        from the saved file, never from the original weights source (Keras serialisation)."""
        # Weights are restored from the saved file: never download or read the original weights again
        # (a .keras file must load where the original weights file does not exist).
        return cls(**{**config, "weights": None})


FREEZE_BATCHNORM = (False, True, "statistics")


def _freeze_batchnorm(trunk, mode):
    """Applies `EmbeddingModel(freeze_batchnorm=mode)` to the BatchNormalization layers of `trunk`."""
    if not (isinstance(mode, bool) or mode == "statistics"):
        raise ValueError(f"freeze_batchnorm must be one of {FREEZE_BATCHNORM}, got {mode!r}.")
    for layer in trunk._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            if mode is True:
                layer.trainable = False
            elif mode == "statistics":
                _use_moving_statistics(layer)


def _use_moving_statistics(layer):
    """Makes a BatchNormalization layer normalise with its moving statistics, also when training (so they are
    never updated), while γ/β stay trainable.

    Keras 3 passes the outer model's `training` down to every nested layer, which
    overrides a `training=False` given when the graph was built, so the layer's
    own `call` is wrapped. The wrapper is not saved: `EmbeddingModel` applies it
    again when a saved model is rebuilt from its config.
    """
    call = layer.call

    def moving_statistics_call(inputs, training=None, mask=None):
        return call(inputs, training=False, mask=mask)

    layer.call = moving_statistics_call


def _check_input_shape(input_shape):
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (height, width, channels) of positive ints, got {input_shape}.")
    return input_shape


def _check_channels(input_shape, mode, weights, gray_to_rgb, backbone):
    """Whether to repeat a gray input to RGB (resolves `gray_to_rgb=None`); errors for unusable channels."""
    channels = input_shape[-1]
    needs_rgb = mode in RGB_MODES or weights is not None
    if gray_to_rgb is None:
        gray_to_rgb = channels == 1 and needs_rgb
    if gray_to_rgb not in (True, False):
        raise ValueError(f"gray_to_rgb must be None, True or False, got {gray_to_rgb!r}.")
    if gray_to_rgb and channels != 1:
        raise ValueError(f"gray_to_rgb=True needs 1-channel input, got input_shape={input_shape}.")
    if needs_rgb and channels != 3 and not gray_to_rgb:
        raise ValueError(
            f"input_shape={input_shape}: backbone {backbone!r} with weights={weights!r} needs RGB input "
            f"(preprocessing {mode!r} or pretrained weights); use 3 channels, or 1 channel with gray_to_rgb "
            "None/True (repeated to RGB).")
    return gray_to_rgb


def _global_pooling(features, pooling):
    """The "pool" tap: global average, global max, or their sum ("avg_max", the Proxy-Anchor code's GAP + GMP)."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="pool")(features)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="pool")(features)
    average = keras.layers.GlobalAveragePooling2D(name="pool_avg")(features)
    maximum = keras.layers.GlobalMaxPooling2D(name="pool_max")(features)
    return keras.layers.Add(name="pool")([average, maximum])


def _check_heads(heads, embedding_dim, trunk):
    """`heads` as a validated {name: width} dict, or None."""
    if heads is None:
        return None
    if not isinstance(heads, dict) or not heads:
        raise ValueError(f"heads must be a non-empty dict {{head name: width}}, got {heads!r}.")
    if embedding_dim is not None:
        raise ValueError(f"heads={heads} are linear layers on the pool feature and replace the fc layers: pass "
                         f"embedding_dim=None (got embedding_dim={embedding_dim!r}).")
    taken = set(_RESERVED_NAMES) | {trunk.name} | {layer.name for layer in trunk._flatten_layers()}
    for name, width in heads.items():
        if (not isinstance(name, str) or not _LAYER_NAME.match(name) or name in taken
                or re.fullmatch(r"block\d+", name)):
            raise ValueError(f"heads: {name!r} is not a usable head name (letters, digits, '_'; not a backbone "
                             f"layer, a block tap or one of {_RESERVED_NAMES}).")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"heads: the width of head {name!r} must be a positive int, got {width!r}.")
    return dict(heads)


def _build_heads(features, heads, normalize, tap_tensors, embedding_noise=0.0):
    """One Dense per head on `features` (taps), each L2-normalised; "concat" tap; returns {head: output}."""
    outputs = {}
    for name, width in heads.items():
        tap_tensors[name] = keras.layers.Dense(width, kernel_initializer="glorot_uniform", name=name)(features)
        head = tap_tensors[name]
        if embedding_noise:
            head = keras.layers.GaussianNoise(embedding_noise, name=f"embedding_noise_{name}")(head)
        outputs[name] = L2Normalization(name=f"l2_normalize_{name}")(head) if normalize else head
    if len(heads) > 1:
        tap_tensors["concat"] = keras.layers.Concatenate(name="concat")(list(outputs.values()))
    return outputs


def _check_regularizers(feature_dropout, feature_noise, embedding_noise, has_layers):
    """Raises a ValueError naming the argument for an unusable training-time regulariser (Sharing Matters
    Table 6 baselines)."""
    for name, value in (("feature_dropout", feature_dropout), ("feature_noise", feature_noise),
                        ("embedding_noise", embedding_noise)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
    if feature_dropout >= 1:
        raise ValueError(f"feature_dropout is a rate in [0, 1), got {feature_dropout!r}.")
    if (feature_dropout or feature_noise) and not has_layers:
        raise ValueError("feature_dropout / feature_noise act on the input of the fc layers or heads; with "
                         "embedding_dim=None and no heads there is none (use embedding_noise).")


def _feature_regularizers(features, feature_dropout, feature_noise):
    """Gaussian noise (std `feature_noise`) then dropout (`feature_dropout`) on the pooled feature, in training."""
    if feature_noise:
        features = keras.layers.GaussianNoise(feature_noise, name="feature_noise")(features)
    if feature_dropout:
        features = keras.layers.Dropout(feature_dropout, name="feature_dropout")(features)
    return features


def _fc_names(fc_names, embedding_dim, extra_fc, trunk):
    """The validated names of the fc layers (empty for embedding_dim=None)."""
    if embedding_dim is None:
        if extra_fc or fc_names:
            raise ValueError(f"embedding_dim=None builds no fc layer, but extra_fc={extra_fc!r} / "
                             f"fc_names={fc_names!r} ask for some.")
        return []
    if fc_names is None:
        return ["fc"] + [f"fc{i}" for i in range(2, extra_fc + 2)]
    if isinstance(fc_names, str) or not all(isinstance(n, str) for n in fc_names) or not fc_names:
        raise ValueError(f"fc_names must be a non-empty list of layer names, got {fc_names!r} "
                         "(embedding_dim=None builds no fc layer).")
    fc_names = list(fc_names)
    if extra_fc and extra_fc != len(fc_names) - 1:
        raise ValueError(f"extra_fc={extra_fc} contradicts fc_names={fc_names} ({len(fc_names)} layers); "
                         "give only fc_names.")
    taken = set(_RESERVED_NAMES) | {trunk.name} | {layer.name for layer in trunk._flatten_layers()}
    for name in fc_names:
        if not _LAYER_NAME.match(name) or name in taken or re.fullmatch(r"block\d+", name):
            raise ValueError(f"fc_names: {name!r} is not a usable layer name (letters, digits, '_'; not a "
                             f"backbone layer, a block tap or one of {_RESERVED_NAMES}).")
    if len(set(fc_names)) != len(fc_names):
        raise ValueError(f"fc_names has duplicates: {fc_names}.")
    return fc_names
