"""tfdml.retrieval: exact search and rank statistics against float64 brute force, Index save/load."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.retrieval import Index, ranking, search

BACKENDS = ["tf", pytest.param("faiss", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("faiss") is None, reason="faiss not installed"))]


def _brute_force(queries, references, exclude_self=False):
    """Explicit float64 distances and the stable ranking (ties by the lower reference index)."""
    q = queries.astype(np.float64)
    r = references.astype(np.float64)
    d = np.array([[np.sum((q[i] - r[j]) ** 2) for j in range(len(r))] for i in range(len(q))])
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")
    return d, order[:, :-1] if exclude_self else order


def _point_sets():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(120, 16))
    return {
        "spread": rng.normal(size=(120, 16)),
        # Squeezed together (a collapsed model): ‖r‖² − 2⟨q, r⟩ in float32 cannot order these.
        "collapsed": 1.0 + 1e-4 * noise,
        # Collapsed far from the origin and, per point, from the mean: the certificate fails, exact fallback.
        "collapsed_offset": np.concatenate([30.0 + 1e-3 * noise[:60], -30.0 + 1e-3 * noise[60:]]),
        "duplicates": np.repeat(rng.normal(size=(12, 16)), 10, axis=0),
        "integer_grid": rng.integers(0, 3, size=(120, 4)).astype(float),
    }


@pytest.mark.parametrize("name", list(_point_sets()))
def test_top_k_equals_float64_brute_force(name):
    x = _point_sets()[name].astype(np.float32)
    d, order = _brute_force(x, x, exclude_self=True)
    for block, margin in ((32, 2), (8192, 16)):
        searcher = search.Searcher(x, block_size=block, margin=margin)
        squared, idx = searcher(x, k=7, exclude=np.arange(len(x)), chunk_size=50)
        np.testing.assert_array_equal(idx, order[:, :7])
        np.testing.assert_allclose(squared, np.take_along_axis(d, order[:, :7], axis=1), rtol=1e-12, atol=0)


def test_float32_estimate_alone_would_be_wrong_on_collapsed_points():
    # Guards the test above: the plain float32 formula really mis-orders these points.
    x = _point_sets()["collapsed"].astype(np.float32)
    est = (x ** 2).sum(1)[None, :] - 2 * x @ x.T
    np.fill_diagonal(est, np.inf)
    _, order = _brute_force(x, x, exclude_self=True)
    assert not np.array_equal(np.argsort(est, axis=1, kind="stable")[:, :7], order[:, :7])


def test_certificate_fallback_breaks_ties_by_lower_index():
    # 40 identical references: the float32 candidates (margin 2) cannot certify the top 5, so every query
    # takes the exact fallback, which must return the lowest indices among the ties.
    x = np.concatenate([np.ones((40, 3)), np.zeros((5, 3))]).astype(np.float32)
    squared, idx = search.Searcher(x, block_size=16, margin=2)(np.full((2, 3), 1.0, np.float32), k=5)
    np.testing.assert_array_equal(idx, [[0, 1, 2, 3, 4]] * 2)
    np.testing.assert_array_equal(squared, np.zeros((2, 5)))


def _reference_ranks(x, labels, refs=None, ref_labels=None):
    same = refs is None
    _, order = _brute_force(x, x if same else refs, exclude_self=same)
    rel = (labels if same else ref_labels)[order] == labels[:, None]
    first = np.where(rel.any(axis=1), rel.argmax(axis=1), -1)
    return first, rel


@pytest.mark.parametrize("name", list(_point_sets()))
@pytest.mark.parametrize("sizes", [(16, 24), (1024, 4096)])
def test_rank_statistics_equal_brute_force(name, sizes, monkeypatch):
    x = _point_sets()[name].astype(np.float32)
    labels = np.random.default_rng(1).integers(0, 9, len(x))
    first, rel = _reference_ranks(x, labels)
    lengths = np.where(np.arange(len(x)) % 3 == 0, 50, np.bincount(labels)[labels] - 1)
    for blocks in (10 ** 9, 0):  # symmetric sweep, then per-chunk sweeps
        monkeypatch.setattr(ranking, "_SYMMETRIC_BLOCKS", blocks)
        got = ranking.rank_relevance(x, labels, list_lengths=lengths, chunk_size=sizes[0], block_size=sizes[1])
        np.testing.assert_array_equal(got.first_positive_rank, first)
        for i in range(len(x)):
            np.testing.assert_array_equal(got.relevance[i, :lengths[i]], rel[i, :lengths[i]])


def test_rank_statistics_against_separate_references():
    sets = _point_sets()
    queries, refs = sets["collapsed"][:50].astype(np.float32), sets["collapsed"][50:].astype(np.float32)
    rng = np.random.default_rng(2)
    q_labels, r_labels = rng.integers(0, 6, 50), rng.integers(0, 5, 70)  # class 5: no reference
    first, rel = _reference_ranks(queries, q_labels, refs, r_labels)
    got = ranking.rank_relevance(queries, q_labels, refs, r_labels, list_lengths=np.full(50, 30), chunk_size=16,
                                 block_size=16)
    np.testing.assert_array_equal(got.first_positive_rank, first)
    np.testing.assert_array_equal(got.relevance, rel[:, :30])


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_search_ids_labels_distances(backend):
    x = _point_sets()["collapsed"].astype(np.float32)
    labels = np.arange(len(x)) % 7
    ids = np.array([f"img_{i:03d}.jpg" for i in range(len(x))])
    index = Index(x, labels, ids, backend=backend, block_size=32, margin=3)
    queries = x[:10] + np.float32(1e-6)
    d, order = _brute_force(queries, x)
    found = index.search(queries, k=4, batch_size=4)
    np.testing.assert_array_equal(found.indices, order[:, :4])
    np.testing.assert_array_equal(found.ids, ids[order[:, :4]])
    np.testing.assert_array_equal(found.labels, labels[order[:, :4]])
    np.testing.assert_allclose(found.distances, np.sqrt(np.take_along_axis(d, order[:, :4], axis=1)), rtol=1e-6)
    assert index.search(queries, k=1000).indices.shape == (10, len(x))  # k clipped to the index size


def test_index_bad_inputs_name_the_problem():
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="NaN"):
        Index(np.where(np.eye(5, 3) > 0, np.nan, x))
    with pytest.raises(ValueError, match="labels"):
        Index(x, labels=[0, 1])
    with pytest.raises(ValueError, match="backend"):
        Index(x, backend="annoy")
    index = Index(x)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        index.search(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="no embedder"):
        index.search(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((1, 3), np.nan, np.float32))


def _tiny_embedder(channels=3):
    model = tfdml.models.EmbeddingModel("small_cnn", embedding_dim=6, input_shape=(16, 16, channels))
    return model.embedder("fc")


def test_index_from_dataset_searches_images_and_round_trips(tmp_path):
    embedder = _tiny_embedder()
    images = np.random.default_rng(0).uniform(0, 255, (40, 16, 16, 3)).astype(np.float32)
    labels = np.arange(40) % 5
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    index = Index.from_dataset(embedder, data, verbose=False)
    assert len(index) == 40 and index.dim == 6
    by_image = index.search(images[:6], k=3)
    np.testing.assert_array_equal(by_image.indices[:, 0], np.arange(6))  # each image finds itself
    index.save(str(tmp_path / "index"))
    assert json.loads((tmp_path / "index" / "index.json").read_text())["embedder"]
    loaded = Index.load(str(tmp_path / "index"))
    again = loaded.search(images[:6], k=3)
    np.testing.assert_array_equal(again.indices, by_image.indices)
    np.testing.assert_array_equal(again.labels, labels[by_image.indices])


def test_truncated_index_file_gives_a_clear_error(tmp_path):
    Index(np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)).save(str(tmp_path))
    path = tmp_path / "index.npz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        Index.load(str(tmp_path))
    os.remove(path)
    with pytest.raises(FileNotFoundError, match="index.npz"):
        Index.load(str(tmp_path))


def test_index_from_a_split_returns_the_datasets_own_labels_and_class_names(tmp_path):
    split = tfdml.data.load_split("digits", "test", image_size=8)  # digits 5-9, split ids 0-4
    model = tfdml.models.EmbeddingModel("small_cnn", embedding_dim=4, input_shape=(8, 8, 3))
    index = Index.from_split(model.embedder("fc"), split, verbose=False)
    assert sorted(set(index.labels.tolist())) == [5, 6, 7, 8, 9]
    found = index.search(index.embeddings[:3], k=1)
    np.testing.assert_array_equal(found.labels[:, 0], split.original_labels[split.labels[:3]])
    assert index.names(found.labels[:, 0]).tolist() == [str(label) for label in found.labels[:, 0]]
    named = Index(np.eye(2, dtype=np.float32), [101, 102], class_names={101: "Acura", 102: "BMW"})
    assert named.names(named.search(np.eye(2, dtype=np.float32), k=1).labels).tolist() == [["Acura"], ["BMW"]]
    restored = Index.load(named.save(str(tmp_path / "index")))
    assert restored.class_names == {101: "Acura", 102: "BMW"}


def test_long_lists_keep_candidates_bounded_by_the_chunk(monkeypatch):
    """mAP@1000-style lists (L = 400 of 2,000) keep at most about chunk × (L + block) candidate pairs at any
    time, never a large part of the N×N pairs, and stay exact."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 20, 2000)
    x = (rng.normal(size=(20, 16))[labels] + rng.normal(size=(2000, 16))).astype(np.float32)
    lengths = np.full(len(x), 400)
    held = []
    add = ranking._Sweep.add

    def counting_add(self, q, r, est):
        add(self, q, r, est)
        held.append(sum(len(part[0]) for part in self.pending))

    monkeypatch.setattr(ranking._Sweep, "add", counting_add)
    got = ranking.rank_relevance(x, labels, list_lengths=lengths, chunk_size=128, block_size=256)
    assert max(held) < 128 * (400 + 256) * 2 < len(x) ** 2 / 10
    _, rel = _reference_ranks(x, labels)
    np.testing.assert_array_equal(got.relevance, rel[:, :400])
