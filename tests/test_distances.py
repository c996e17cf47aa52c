"""tfdml.distances against explicit loops, plus gradient safety at zero distance."""
import numpy as np
import pytest
import tensorflow as tf

from tfdml import distances


def _loop(x, y, fn):
    return np.array([[fn(a, b) for b in y] for a in x])


REFERENCES = {
    "euclidean": lambda a, b: np.sqrt(np.sum((a - b) ** 2)),
    "squared_euclidean": lambda a, b: np.sum((a - b) ** 2),
    "cosine": lambda a, b: a @ b / (np.linalg.norm(a) * np.linalg.norm(b)),
    "dot": lambda a, b: a @ b,
    "cosine_distance": lambda a, b: 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)),
}


@pytest.mark.parametrize("metric", sorted(REFERENCES))
def test_pairwise_matches_loops(metric):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    np.testing.assert_allclose(distances.pairwise(x, y, metric).numpy(), _loop(x, y, REFERENCES[metric]), atol=1e-10)
    np.testing.assert_allclose(distances.pairwise(x, None, metric).numpy(), _loop(x, x, REFERENCES[metric]), atol=1e-7)


def test_named_functions():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(distances.euclidean(x).numpy(), [[0, 5], [5, 0]])
    np.testing.assert_allclose(distances.squared_euclidean(x).numpy(), [[0, 25], [25, 0]])
    np.testing.assert_allclose(distances.dot(x).numpy(), [[25, 0], [0, 0]])
    # Zero vectors have cosine 0 with everything (no NaN).
    np.testing.assert_allclose(distances.cosine(x).numpy(), [[1, 0], [0, 0]])


def test_euclidean_gradient_finite_at_zero_distance():
    x = tf.constant([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(distances.euclidean(x))
    grad = tape.gradient(total, x).numpy()
    assert np.isfinite(grad).all()


def test_safe_sqrt_value_and_gradient():
    v = tf.constant([0.0, 1e-20, 4.0, -1e-9])
    with tf.GradientTape() as tape:
        tape.watch(v)
        out = distances.safe_sqrt(v)
        total = tf.reduce_sum(out)
    np.testing.assert_allclose(out.numpy(), [0, 0, 2, 0])
    np.testing.assert_allclose(tape.gradient(total, v).numpy(), [0, 0, 0.25, 0])


def test_l2_normalize_zero_vector_finite():
    x = tf.zeros((2, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = distances.l2_normalize(x)
        total = tf.reduce_sum(y)
    assert np.all(y.numpy() == 0)
    assert np.isfinite(tape.gradient(total, x).numpy()).all()


def test_unknown_metric_names_argument():
    with pytest.raises(ValueError, match="metric"):
        distances.pairwise(np.ones((2, 2)), None, "manhattan")
