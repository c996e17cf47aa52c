"""Cross-batch memory (XBM): PyTorch Metric Learning's `CrossBatchMemory` as the oracle over a sequence of
batches, an explicit-loop numpy reference over the concatenated embeddings, warm-up, the authors'-code
form, MirroredStrategy == one device, model.fit (training only writes the memory), saving, errors."""
import numpy as np
import pytest
import tensorflow as tf

import tfdml
from conftest import loss_and_gradient, mirrored_strategy

DIM = 5
# A sequence of batches with several classes, singletons and one class.
BATCH_LABELS = [np.array([0, 0, 1, 2]), np.array([1, 3, 3, 0]), np.array([2, 2, 2, 2]), np.array([4, 0, 1, 5]),
                np.array([3, 1, 3, 1]), np.array([0, 2, 0, 4])]


def batches(seed=0):
    rng = np.random.default_rng(seed)
    return [(labels, rng.normal(size=(len(labels), DIM))) for labels in BATCH_LABELS]


# --------------------------------------------------------------- PML oracle
torch = pytest.importorskip("torch")
pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")

CASES = {
    "contrastive": (lambda: tfdml.losses.ContrastiveLoss(neg_margin=1.2, dtype="float64"),
                    lambda: (pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.2), None)),
    "multi_similarity": (lambda: tfdml.losses.MultiSimilarityLoss(dtype="float64"),
                         lambda: (pml_losses.MultiSimilarityLoss(alpha=2, beta=40, base=0.5),
                                  pml_miners.MultiSimilarityMiner(0.1))),
    "circle": (lambda: tfdml.losses.CircleLoss(margin=0.4, scale=80.0, dtype="float64"),
               lambda: (pml_losses.CircleLoss(), None)),
    "supcon": (lambda: tfdml.losses.SupConLoss(average_over="active_anchors", dtype="float64"),
               lambda: (pml_losses.SupConLoss(temperature=0.1), None)),
    "ntxent": (lambda: tfdml.losses.NTXentLoss(temperature=0.07, denominator="negatives", dtype="float64"),
               lambda: (pml_losses.NTXentLoss(temperature=0.07), None)),
    "tuplet_margin": (lambda: tfdml.losses.TupletMarginLoss(scale=16.0, dtype="float64"),
                      lambda: (pml_losses.TupletMarginLoss(margin=np.degrees(0.1), scale=16.0), None)),
}


@pytest.mark.parametrize("memory_size", [6, 10])
@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_pml_cross_batch_memory_over_a_sequence_of_batches(case, memory_size):
    ours_inner, theirs = CASES[case]
    ours = tfdml.losses.CrossBatchMemory(ours_inner(), memory_size=memory_size, dtype="float64")
    loss, miner = theirs()
    oracle = pml_losses.CrossBatchMemory(loss, embedding_size=DIM, memory_size=memory_size, miner=miner)
    for step, (labels, x) in enumerate(batches()):
        value, grad = loss_and_gradient(ours, labels, x)
        xt = torch.tensor(x, requires_grad=True)
        expected = oracle(xt, torch.tensor(labels))
        if expected.requires_grad:
            (expected_grad,) = torch.autograd.grad(expected, xt, allow_unused=True)
        expected_grad = np.zeros_like(x) if not expected.requires_grad or expected_grad is None \
            else expected_grad.numpy()
        expected = float(expected.detach())
        assert abs(value - expected) <= 1e-6 * max(1.0, abs(expected)), (step, value, expected)
        assert np.max(np.abs(grad - expected_grad)) <= 1e-6 * max(1.0, np.max(np.abs(expected_grad))), step


# ------------------------------------------------- explicit-loop numpy reference
def contrastive_against_references(x, labels, ref_x, ref_labels, neg_margin):
    """Contrastive loss (pos margin 0) of each anchor of the batch against the batch itself (j ≠ i) and the
    references: mean over positive pairs of d, plus mean over negative pairs with d < m of m − d."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    points = [(unit[j], labels[j], j) for j in range(len(x))]
    points += [(r / np.linalg.norm(r), label, None) for r, label in zip(ref_x, ref_labels)]
    positives, negatives = [], []
    for i in range(len(x)):
        for point, label, index in points:
            if index == i:
                continue
            d = np.sqrt(max(np.sum((unit[i] - point) ** 2), 0.0))
            if label == labels[i]:
                positives.append(d)
            elif neg_margin - d > 0:
                negatives.append(neg_margin - d)
    return (np.mean(positives) if positives else 0.0) + (np.mean(negatives) if negatives else 0.0)


def test_memory_of_past_batches_equals_a_loop_over_the_concatenated_embeddings():
    memory_size = 12  # three past batches of 4 plus the current: the current batch replaces the oldest
    xbm = tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(neg_margin=1.2), memory_size=memory_size,
                                        dtype="float64")
    seen_x, seen_labels = [], []
    for labels, x in batches(seed=3):
        # The memory after enqueueing the current batch holds it and the last 2 batches before it.
        ref_x = np.concatenate(seen_x[-2:]) if seen_x else np.zeros((0, DIM))
        ref_labels = np.concatenate(seen_labels[-2:]) if seen_labels else np.zeros((0,), int)
        expected = contrastive_against_references(x, labels, ref_x, ref_labels, 1.2)
        assert float(xbm(labels, x)) == pytest.approx(expected, rel=1e-12, abs=1e-12)
        seen_x.append(x)
        seen_labels.append(labels)
    stored = xbm.state_layer.queue.embeddings.numpy()
    unit = np.concatenate(seen_x[-3:]) / np.linalg.norm(np.concatenate(seen_x[-3:]), axis=1, keepdims=True)
    # 6 batches of 4 in 12 slots: the queue holds batches 4, 5, 6 in slot order 4|5|6 → rows 0-3 batch 4 …
    np.testing.assert_allclose(stored, unit, rtol=1e-12)


def test_warm_up_neither_reads_nor_writes_the_memory():
    plain = tfdml.losses.ContrastiveLoss(neg_margin=1.2, dtype="float64")
    xbm = tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(neg_margin=1.2), memory_size=8,
                                        warmup_steps=2, dtype="float64")
    data = batches()
    for labels, x in data[:2]:
        assert float(xbm(labels, x)) == pytest.approx(float(plain(labels, x)), rel=1e-14)
        assert not xbm.state_layer.queue.filled.numpy().any()
    labels, x = data[2]
    expected = contrastive_against_references(x, labels, np.zeros((0, DIM)), np.zeros((0,), int), 1.2)
    assert float(xbm(labels, x)) == pytest.approx(expected, rel=1e-12)  # memory now on: holds this batch only
    assert xbm.state_layer.queue.filled.numpy().sum() == 4
    labels, x = data[3]
    expected = contrastive_against_references(x, labels, data[2][1], data[2][0], 1.2)
    assert float(xbm(labels, x)) == pytest.approx(expected, rel=1e-12)


def test_batch_term_adds_the_batch_loss_as_the_authors_code():
    plain = tfdml.losses.ContrastiveLoss(dtype="float64")
    memory_only = tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(), memory_size=8, dtype="float64")
    both = tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(), memory_size=8, batch_term=True,
                                         memory_weight=0.5, dtype="float64")
    for labels, x in batches():
        expected = float(plain(labels, x)) + 0.5 * float(memory_only(labels, x))
        assert float(both(labels, x)) == pytest.approx(expected, rel=1e-13)


def test_embedding_expansion_expands_the_batch_and_leaves_memory_columns_plain():
    """With an empty memory XBM + EE is the EE loss; afterwards it is finite and differs from EE alone."""
    expansion = tfdml.EmbeddingExpansion(2)
    ee = tfdml.losses.MultiSimilarityLoss(expansion=expansion, dtype="float64")
    xbm = tfdml.losses.CrossBatchMemory(tfdml.losses.MultiSimilarityLoss(expansion=expansion), memory_size=16,
                                        dtype="float64")
    data = batches()
    labels, x = data[0]
    assert float(xbm(labels, x)) == pytest.approx(float(ee(labels, x)), rel=1e-13)
    for labels, x in data[1:]:
        value, grad = loss_and_gradient(xbm, labels, x)
        assert np.isfinite(value) and np.isfinite(grad).all()


def test_graph_and_xla_equal_eager():
    def run(wrap):
        xbm = tfdml.losses.CrossBatchMemory(tfdml.losses.CircleLoss(), memory_size=10)
        call = wrap(lambda labels, x: xbm(labels, x))
        return [float(call(tf.constant(labels), tf.constant(x, tf.float32))) for labels, x in batches()]

    eager = run(lambda f: f)
    np.testing.assert_allclose(run(tf.function), eager, rtol=1e-5)
    np.testing.assert_allclose(run(lambda f: tf.function(f, jit_compile=True)), eager, rtol=1e-4)


def test_two_replicas_under_mirrored_strategy_equal_one_device():
    """The memory holds the global batch: 2 replicas with 2 samples each == one device with the 4."""
    single = tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(), memory_size=10)
    strategy = mirrored_strategy()
    with strategy.scope():
        mirrored = tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(), memory_size=10)
        mirrored.build_state(DIM)

    @tf.function
    def replica_values(labels, x):
        def step(labels, x):
            context = tf.distribute.get_replica_context()
            index = context.replica_id_in_sync_group
            return mirrored(labels[2 * index:2 * index + 2], x[2 * index:2 * index + 2])

        return strategy.reduce("SUM", strategy.run(step, (labels, x)), axis=None)

    for labels, x in batches():
        expected = float(single(labels, x.astype(np.float32)))
        value = float(replica_values(tf.constant(labels), tf.constant(x, tf.float32)))
        assert value == pytest.approx(expected, rel=1e-5)
    distributed = mirrored.state_layer.queue.embeddings.value
    assert isinstance(distributed, tf.distribute.DistributedValues)
    for replica_value in distributed.values:
        np.testing.assert_allclose(replica_value.numpy(), single.state_layer.queue.embeddings.numpy(), rtol=1e-6)


def _model():
    inputs = tf.keras.Input((DIM,))
    return tf.keras.Model(inputs, tf.keras.layers.Dense(4)(inputs))


def test_model_fit_trains_with_the_memory_and_validation_does_not_write_it(tmp_path):
    xbm = tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(), memory_size=32)
    model = tfdml.losses.attach_loss_state(_model(), xbm)
    model.compile(optimizer="adam", loss=xbm)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, DIM)).astype(np.float32), np.repeat(np.arange(6), 4)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    queue = xbm.state_layer.queue
    assert int(queue.steps.numpy()) == 3 and queue.filled.numpy().sum() == 24
    before = queue.embeddings.numpy().copy()
    model.evaluate(x + 5.0, y + 100, batch_size=8, verbose=0)
    assert int(queue.steps.numpy()) == 3
    np.testing.assert_array_equal(queue.embeddings.numpy(), before)
    np.testing.assert_array_equal(queue.labels.numpy()[:24], y)
    model.save(tmp_path / "xbm.keras")
    restored = tf.keras.models.load_model(tmp_path / "xbm.keras")
    restored_queue = restored.loss.state_layer.queue
    np.testing.assert_array_equal(restored_queue.embeddings.numpy(), before)
    assert int(restored_queue.pointer.numpy()) == int(queue.pointer.numpy())


def test_config_round_trip_and_registry():
    xbm = tfdml.losses.get("cross_batch_memory", loss={"name": "multi_similarity", "alpha": 3.0}, memory_size=64,
                           warmup_steps=5, batch_term=True, memory_weight=0.5)
    assert isinstance(xbm.loss, tfdml.losses.MultiSimilarityLoss) and xbm.loss.alpha == 3.0
    again = tfdml.losses.CrossBatchMemory.from_config(xbm.get_config())
    assert again.get_config() == xbm.get_config()
    assert (again.memory_size, again.warmup_steps, again.batch_term, again.memory_weight) == (64, 5, True, 0.5)


@pytest.mark.parametrize("arguments, message", [
    ({"loss": tfdml.losses.TripletLoss(), "memory_size": 8}, "loss"),
    ({"loss": tfdml.losses.ContrastiveLoss(mining="semihard"), "memory_size": 8}, "mining"),
    ({"loss": {"alpha": 2.0}, "memory_size": 8}, "name"),
    ({"loss": tfdml.losses.ContrastiveLoss(), "memory_size": 0}, "memory_size"),
    ({"loss": tfdml.losses.ContrastiveLoss(), "memory_size": 2.5}, "memory_size"),
    ({"loss": tfdml.losses.ContrastiveLoss(), "memory_size": 8, "warmup_steps": -1}, "warmup_steps"),
])
def test_bad_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        tfdml.losses.CrossBatchMemory(**arguments)


def test_nan_in_gives_nan_out():
    xbm = tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(), memory_size=8)
    labels, x = batches()[0]
    x = x.astype(np.float32)
    x[1, 2] = np.nan
    assert np.isnan(float(xbm(labels, x)))


def xbm_code_contrastive(x, labels, ref_x, ref_labels, margin=0.5):
    """The contrastive loss of the XBM authors' code, looped: per anchor Σ_P (1 − s) over positives other than
    itself + Σ_N (s − margin) over negatives with s > margin (their code adds s; the gradient is the same),
    summed over anchors and divided by the number of anchors."""
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    total = 0.0
    for i in range(len(x)):
        for j in range(len(ref_x)):
            s = float(unit(x[i]) @ unit(ref_x[j]))
            if ref_labels[j] == labels[i] and not np.array_equal(ref_x[j], x[i]):
                total += 1.0 - s
            elif ref_labels[j] != labels[i] and s > margin:
                total += s - margin
    return total / len(x)


def test_xbm_protocol_equals_the_authors_code_form():
    """configs/xbm_contrastive_sop.yaml's loss: cosine contrastive (1, 0.5), sum ÷ b, batch loss + memory loss."""
    xbm = tfdml.losses.CrossBatchMemory(
        tfdml.losses.ContrastiveLoss(pos_margin=1.0, neg_margin=0.5, metric="cosine", reduction="batch"),
        memory_size=12, batch_term=True, dtype="float64")
    seen_x, seen_labels = [], []
    rng = np.random.default_rng(5)
    for labels, _ in batches():
        x = rng.normal(size=(len(labels), DIM)) + 1.5  # similarities above the 0.5 margin occur
        memory_x = np.concatenate(seen_x[-2:] + [x])
        memory_labels = np.concatenate(seen_labels[-2:] + [labels])
        expected = xbm_code_contrastive(x, labels, x, labels) + xbm_code_contrastive(x, labels, memory_x,
                                                                                     memory_labels)
        assert float(xbm(labels, x)) == pytest.approx(expected, rel=1e-12)
        seen_x.append(x)
        seen_labels.append(labels)


def test_cosine_contrastive_rejects_triplet_mining():
    with pytest.raises(ValueError, match="mining"):
        tfdml.losses.ContrastiveLoss(metric="cosine", mining="hard")
    with pytest.raises(ValueError, match="metric"):
        tfdml.losses.ContrastiveLoss(metric="dot")


def test_memory_with_synthetic_points_stores_ee_points_as_negatives_only():
    """memory_points="with_synthetic": the memory holds each batch's unit embeddings and EE points; with the
    additive reduction "batch" the memory's share of the loss is an explicit loop over the stored points, the
    synthetic ones entering only as negatives."""
    expansion = tfdml.EmbeddingExpansion(2)
    inner = lambda: tfdml.losses.ContrastiveLoss(neg_margin=1.2, reduction="batch", expansion=expansion)  # noqa
    xbm = tfdml.losses.CrossBatchMemory(inner(), memory_size=64, memory_points="with_synthetic", dtype="float64")
    plain_ee = tfdml.losses.ContrastiveLoss(neg_margin=1.2, reduction="batch", expansion=expansion, dtype="float64")
    (labels1, x1), (labels2, x2) = batches(seed=7)[:2]
    labels1 = np.array([0, 0, 1, 1])  # two positive pairs: 2 × n = 4 synthetic points
    assert float(xbm(labels1, x1)) == pytest.approx(float(plain_ee(labels1, x1)), rel=1e-12)
    unit1 = x1 / np.linalg.norm(x1, axis=1, keepdims=True)
    points, point_labels, synthetic = (np.asarray(t) for t in expansion.expand(unit1, labels1))
    queue = xbm.state_layer.queue
    kinds = queue.filled.numpy()
    stored = kinds > 0
    assert stored.sum() == len(points) == 8 and (kinds == 2).sum() == synthetic.sum() == 4
    np.testing.assert_allclose(queue.embeddings.numpy()[stored], points, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(queue.labels.numpy()[stored], point_labels)

    unit2 = x2 / np.linalg.norm(x2, axis=1, keepdims=True)
    memory_share = 0.0
    for i in range(len(x2)):
        for point, label, is_synthetic in zip(points, point_labels, synthetic):
            d = np.linalg.norm(unit2[i] - point)
            if label == labels2[i]:
                memory_share += 0.0 if is_synthetic else d  # synthetic points are never positives
            else:
                memory_share += max(1.2 - d, 0.0)
    expected = float(plain_ee(labels2, x2)) + memory_share / len(x2)
    assert float(xbm(labels2, x2)) == pytest.approx(expected, rel=1e-12)


def test_memory_with_synthetic_points_needs_an_expansion():
    with pytest.raises(ValueError, match="memory_points"):
        tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(), 8, memory_points="with_synthetic")
    with pytest.raises(ValueError, match="memory_points"):
        tfdml.losses.CrossBatchMemory(tfdml.losses.ContrastiveLoss(), 8, memory_points="everything")
