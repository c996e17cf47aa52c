"""The EE configs' update equals the official EE trainer's (Ko & Gu, CVPR 2020, MXNet code): Adam on
the gradient of the *summed* per-anchor HPHN + EE losses plus coupled weight decay wd·w, checked for one
optimizer step of a tiny model against an explicit numpy update (float64 numerical gradient of the
explicit-loop reference loss)."""
import keras
import numpy as np
import pytest

import reference_triplet_losses as ref
from conftest import numeric_gradient
from tfdml.training import load_config
from tfdml.training.optimizers import make_optimizer
from tfdml.training.runner import build_loss

CONFIG = "configs/ee_cub200.yaml"
# 4 classes x 4 images in class blocks, as an m_per_class batch.
LABELS = np.repeat(np.arange(4), 4)
RNG = np.random.default_rng(7)
INPUTS = RNG.normal(size=(len(LABELS), 5))
W_BASE = RNG.normal(size=(5, 3))


def _official_loss(weights, config, reduce):
    embeddings = INPUTS @ weights
    return ref.official_hphn_ee(embeddings, LABELS, config["loss"]["params"]["margin"],
                                config["expansion"]["n_points"], reduce=reduce)


def _adam_step(weights, gradient, learning_rate, wd, epsilon):
    """MXNet's Adam with `wd`, first step: g = ∇ + wd·w; m = (1 − β₁)g, v = (1 − β₂)g²;
    w − lr·√(1 − β₂)/(1 − β₁)·m/(√v + ε)."""
    beta_1, beta_2 = 0.9, 0.999
    g = gradient + wd * weights
    m, v = (1 - beta_1) * g, (1 - beta_2) * g ** 2
    return weights - learning_rate * np.sqrt(1 - beta_2) / (1 - beta_1) * m / (np.sqrt(v) + epsilon)


def _scaled_weights(config):
    """W_BASE scaled so that, for some weight, the decay term wd·w opposes the loss gradient and is
    larger than the *mean* loss's gradient but smaller than the *summed* loss's: there the two updates go
    opposite ways, so the test tells them apart. The embeddings are normalised, so ∇(c·W) = ∇(W)/c."""
    wd = config["optimizer"]["weight_decay"]
    gradient = numeric_gradient(lambda w: _official_loss(w, config, "sum"), W_BASE)
    opposed = np.sign(gradient) == -np.sign(W_BASE)
    index = np.unravel_index(np.argmax(np.where(opposed, np.abs(gradient), 0.0)), W_BASE.shape)
    # wd·c·|w| = (|g|/c) / √B: between |g|/(c·B) (mean) and |g|/c (sum).
    scale = np.sqrt(np.abs(gradient[index]) / np.sqrt(len(LABELS)) / (wd * np.abs(W_BASE[index])))
    return scale * W_BASE


def test_hphn_config_step_equals_the_official_mxnet_update():
    config = load_config(CONFIG)
    assert config["loss"]["params"]["average_over"] == "sum"
    assert config["optimizer"]["weight_decay_mode"] == "coupled"
    weights = _scaled_weights(config)
    learning_rate, wd = config["optimizer"]["learning_rate"], config["optimizer"]["weight_decay"]

    # float64 weights: they are large (see _scaled_weights) and the update is ~1e-4.
    model = keras.Sequential([keras.Input((INPUTS.shape[1],), dtype="float64"),
                              keras.layers.Dense(3, use_bias=False, dtype="float64",
                                                 kernel_initializer=keras.initializers.Constant(weights))])
    optimizer = make_optimizer(config, config["training"]["steps_per_epoch"])
    model.compile(optimizer=optimizer, loss=build_loss(config), jit_compile=False)
    model.train_on_batch(INPUTS, LABELS)
    updated = model.layers[-1].kernel.numpy()

    epsilon = optimizer.epsilon
    official = _adam_step(weights, numeric_gradient(lambda w: _official_loss(w, config, "sum"), weights),
                          learning_rate, wd, epsilon)
    mean_loss = _adam_step(weights, numeric_gradient(lambda w: _official_loss(w, config, "mean"), weights),
                           learning_rate, wd, epsilon)
    # The test can tell the two reductions apart: some weight moves the other way under the mean.
    assert np.max(np.abs(official - mean_loss)) > learning_rate
    np.testing.assert_allclose(updated, official, rtol=0, atol=learning_rate * 1e-3)


@pytest.mark.parametrize("row", ["_triplet", "_lifted", "_npair", "_ms"])
def test_other_rows_rescale_the_decay_by_the_batch_size(row):
    """Rows outside the official code keep their printed (mean) normalisation; their decay is the
    official 5e-4 divided by the batch size, so decay and loss gradient keep the official ratio."""
    config = load_config(f"configs/ee_cub200{row}.yaml")
    assert config["optimizer"]["weight_decay"] == pytest.approx(5.0e-4 / config["sampler"]["batch_size"])
    assert config["loss"]["params"].get("average_over") != "sum"
