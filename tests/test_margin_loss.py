"""MarginLoss against an explicit-loop reference; trainable β is trained and saved."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import numpy_reference as ref
import tfdml
from tfdml.losses import mining


def _reference(x, y, triplets, margin, betas, nu):
    xn = ref.normalize(x)
    terms, active, beta_sum = 0.0, 0, 0.0
    for a, p, n, v in zip(*triplets):
        if not v:
            continue
        beta = betas[y[a]] if len(betas) > 1 else betas[0]
        pos = max(np.linalg.norm(xn[a] - xn[p]) - beta + margin, 0.0)
        neg = max(beta - np.linalg.norm(xn[a] - xn[n]) + margin, 0.0)
        terms += pos + neg
        active += int(pos > 0) + int(neg > 0)
        beta_sum += beta
    return (terms / active if active else terms) + nu * beta_sum


@pytest.mark.parametrize("mining_name", ["distance", "hard", "semihard"])
@pytest.mark.parametrize("per_class", [False, True])
def test_margin_loss_matches_reference(mining_name, per_class):
    rng = np.random.default_rng(4)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3])
    x = rng.normal(size=(9, 5))
    loss = tfdml.losses.MarginLoss(margin=0.2, beta=0.9, per_class_beta=per_class, num_classes=4, nu=0.01,
                                   mining=mining_name, seed=3, dtype="float64")
    if per_class:
        loss.state_layer.assign_value(np.array([0.7, 0.8, 0.9, 1.1]))
    betas = loss.state_layer.numpy()
    d = ref.positive_matrix(ref.normalize(x), "euclidean")
    triplets = [np.asarray(t) for t in mining.mine_triplets(tf.constant(d), tf.constant(d), tf.constant(y),
                                                             mining_name, margin=0.2, seed=3, embedding_dim=5)]
    expected = _reference(x, y, triplets, 0.2, betas, 0.01)
    assert float(loss(y, tf.constant(x))) == pytest.approx(expected, abs=1e-6)


def test_hand_worked_margin():
    # a=(1,0), p=(0,1) [d=√2], n=(-1,0) [d=2]; hard mining, β=1.2, α=0.2:
    # pos = [√2 − 1.2 + 0.2]_+ = 0.4142, neg = [1.2 − 2 + 0.2]_+ = 0 for anchor a; by symmetry the
    # positive's triplet: d(p,a)=√2, nearest negative of p is n at √2 → neg = [1.2 − √2 + 0.2]_+ = 0 → 0.
    # Anchor n has no positive. Total = 2·0.4142 over 2 non-zero terms = 0.4142.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = np.array([0, 0, 1])
    loss = tfdml.losses.MarginLoss(mining="hard", dtype="float64")
    assert float(loss(y, x)) == pytest.approx(np.sqrt(2) - 1.0, abs=1e-9)


def test_beta_gets_a_gradient_and_is_trained_and_saved(tmp_path):
    model = tfdml.models.EmbeddingModel("small_cnn", 8, input_shape=(16, 16, 3))
    loss = tfdml.losses.MarginLoss(mining="hard", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    x = np.random.default_rng(0).uniform(0, 255, (20, 16, 16, 3)).astype("float32")
    y = np.repeat(np.arange(5), 4)
    with tf.GradientTape() as tape:
        value = loss(y, model(x))
    assert float(tf.abs(tape.gradient(value, loss.state_layer.raw))[0]) > 0
    before = loss.state_layer.numpy().copy()
    model.fit(x, y, batch_size=20, epochs=2, verbose=0, shuffle=False)
    trained = loss.state_layer.numpy()
    assert not np.allclose(before, trained)
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored.tfdml_loss_state.numpy(), trained)
    # The serving embedder has no β.
    state_ids = {id(v) for v in loss.state_layer.weights}
    assert state_ids and not state_ids & {id(v) for v in model.embedder("fc").weights}


def test_sequential_model_is_rejected_with_a_clear_error():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="functional"):
        tfdml.losses.attach_loss_state(model, tfdml.losses.MarginLoss(), 3)
