"""Every registered loss, with and without Embedding Expansion, eagerly and under tf.function: finite
embeddings of any magnitude (a sweep over 1e-35 … 1e35, every 5 decades) give a finite loss and a
finite gradient, while a NaN embedding still gives a NaN loss."""
import numpy as np
import pytest
import tensorflow as tf

import tfdml

NEEDS_CLASSES = {"proxy_nca", "soft_triple", "arcface", "normalized_softmax", "softmax", "proxy_anchor", "cosface",
                 "sub_center_arcface", "large_margin_softmax", "sphereface", "p2sgrad", "manifold"}
WRAPPERS = {"cross_batch_memory": {"loss": {"name": "contrastive"}, "memory_size": 16}}  # wrapped loss, memory
RAW_EMBEDDINGS = {"npair", "generalized_lifted"}  # unnormalised by default: EE without normalisation
LABELS = tf.constant(np.array([0, 0, 1, 1, 2, 2, 3, 3], np.int32))
MAGNITUDES = [10.0 ** exponent for exponent in range(-35, 36, 5)]
CASES = [(name, expanding) for name in tfdml.losses.names()
         for expanding in ((False, True) if tfdml.losses.get_class(name).supports_expansion else (False,))]


def _build(name, expanding, **kwargs):
    cls = tfdml.losses.get_class(name)
    arguments = {"num_classes": 4} if name in NEEDS_CLASSES else {}
    arguments.update(WRAPPERS.get(name, {}))
    if "seed" in cls.config_args:
        arguments["seed"] = 0
    if expanding:
        arguments["expansion"] = tfdml.EmbeddingExpansion(2, normalize=name not in RAW_EMBEDDINGS)
    loss = tfdml.losses.get(name, **{**arguments, **kwargs})
    loss.build_state(6)
    return loss


def _value_and_gradient(loss):
    def run(embeddings):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = loss(LABELS, embeddings)
        return value, tape.gradient(value, embeddings)

    return run


def _unit_batch():
    x = np.random.default_rng(0).normal(size=(8, 6))
    return (x / np.abs(x).max()).astype(np.float32)  # largest entry exactly ±1


@pytest.mark.parametrize("name,expanding", CASES)
def test_every_magnitude_gives_a_finite_loss_and_gradient(name, expanding):
    loss = _build(name, expanding)
    eager = _value_and_gradient(loss)
    graph = tf.function(eager)
    failures = []
    for magnitude in MAGNITUDES:
        x = tf.constant(_unit_batch() * np.float32(magnitude))
        for mode, run in (("eager", eager), ("tf.function", graph)):
            value, grad = run(x)
            if not np.isfinite(float(value)) or not np.isfinite(grad.numpy()).all():
                failures.append(f"{mode} at {magnitude:.0e}: loss {float(value):.3g}, "
                                f"{int((~np.isfinite(grad.numpy())).sum())} non-finite gradient entries")
    assert not failures, failures


@pytest.mark.parametrize("name", sorted(RAW_EMBEDDINGS | {"angular"}))
def test_regularised_raw_losses_saturate_below_the_float_range(name):
    """‖x‖² of x ~ 1e20 exceeds float32: the regulariser saturates (finite), its gradient stays 2·w·x/B."""
    x = tf.constant(_unit_batch() * np.float32(1e20))
    value, grad = _value_and_gradient(_build(name, False))(x)
    assert np.isfinite(float(value)) and float(value) > 1e37
    value0, grad0 = _value_and_gradient(_build(name, False, embedding_reg=0.0))(x)
    np.testing.assert_allclose(grad.numpy() - grad0.numpy(), 2 * 0.005 * x.numpy() / 8, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(RAW_EMBEDDINGS | {"angular"}))
def test_regulariser_is_exact_in_the_normal_range(name):
    x = tf.constant(_unit_batch() * 3.0)
    with_reg = float(_build(name, False, embedding_reg=0.25)(LABELS, x))
    without = float(_build(name, False, embedding_reg=0.0)(LABELS, x))
    expected = 0.25 * np.mean(np.sum(np.square(x.numpy().astype(np.float64)), axis=1))
    assert with_reg - without == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name,expanding", [case for case in CASES if case[0] in ("generalized_lifted", "npair")])
def test_nan_is_not_masked_at_any_magnitude(name, expanding):
    loss = _build(name, expanding)
    for magnitude in (1e-30, 1.0, 1e30):
        x = _unit_batch() * np.float32(magnitude)
        x[2, 3] = np.nan
        assert np.isnan(float(loss(LABELS, tf.constant(x))))
