"""Approximate `tfdml.retrieval.Index` kinds (faiss IVF-Flat, IVF-PQ, HNSW): recall against exact search,
save/load/add round trips, argument errors."""
import importlib.util

import numpy as np
import pytest

from tfdml.retrieval import Index

faiss_missing = importlib.util.find_spec("faiss") is None
needs_faiss = pytest.mark.skipif(faiss_missing, reason="faiss not installed (pip install faiss-cpu)")
# small IVF-PQ codebooks (2**6 centroids, 16 codes) keep training fast on a small test set
KINDS = {"ivf_flat": {}, "ivf_pq": {"m": 16, "nbits": 6}, "hnsw": {}}
MIN_RECALL = {"ivf_flat": 0.95, "ivf_pq": 0.8, "hnsw": 0.9}  # IVF-PQ: lossy 6-bit codes


def clustered(n, dim=128, clusters=50, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    labels = rng.integers(0, clusters, n)
    return (centres[labels] + 0.4 * rng.normal(size=(n, dim))).astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    gallery, labels = clustered(5000)
    queries, _ = clustered(200, seed=1)
    return gallery, labels, queries, Index(gallery, labels).search(queries, k=10)


def recall(found, exact):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found.indices, exact.indices)])


@needs_faiss
@pytest.mark.parametrize("kind", list(KINDS))
def test_recall_against_exact_and_exact_distances(kind, data):
    gallery, labels, queries, exact = data
    index = Index(gallery, labels, kind=kind, **KINDS[kind])
    found = index.search(queries, k=10)
    assert recall(found, exact) >= MIN_RECALL[kind]
    rows = found.indices
    assert (rows >= 0).all()
    expected = np.sqrt(np.sum((gallery[rows].astype(np.float64) - queries[:, None].astype(np.float64)) ** 2, -1))
    np.testing.assert_allclose(found.distances, expected, rtol=1e-6)
    assert (np.diff(found.distances, axis=1) >= 0).all()
    np.testing.assert_array_equal(found.labels, labels[rows])
    forced = index.search(queries, k=10, exact=True)
    np.testing.assert_array_equal(forced.indices, exact.indices)
    assert 0 < index.memory_bytes()


@needs_faiss
@pytest.mark.parametrize("kind", list(KINDS))
def test_save_load_add_round_trip(kind, data, tmp_path):
    gallery, labels, queries, _ = data
    ids = np.array([f"item{i}" for i in range(len(gallery))])
    index = Index(gallery[:4000], labels[:4000], ids=ids[:4000], kind=kind, **KINDS[kind])
    index.add(gallery[4000:], labels[4000:], ids=ids[4000:])
    assert len(index) == len(gallery)
    before = index.search(queries, k=10)
    loaded = Index.load(index.save(str(tmp_path / "index")))
    assert (tmp_path / "index" / "index.faiss").exists()
    assert loaded.kind == kind and loaded.params == index.params and len(loaded) == len(gallery)
    after = loaded.search(queries, k=10)
    np.testing.assert_array_equal(after.indices, before.indices)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_array_equal(after.labels, labels[after.indices])
    # added items are found: each added embedding is its own nearest neighbour
    own = loaded.search(gallery[4000:4050], k=1)
    np.testing.assert_array_equal(own.ids[:, 0], ids[4000:4050])
    with pytest.raises(ValueError, match="ids must be given"):
        loaded.add(gallery[:2], labels[:2])


@needs_faiss
def test_ivf_training_sample_and_search_params(data):
    gallery, labels, queries, exact = data
    index = Index(gallery, kind="ivf_flat", nlist=64, nprobe=1, train_embeddings=gallery[::3])
    low = recall(index.search(queries, k=10), exact)
    index.set_search_params(nprobe=64)  # every list: exact
    assert recall(index.search(queries, k=10), exact) == 1.0 >= low
    with pytest.raises(ValueError, match="nprobe"):
        index.set_search_params(nprobe=65)


@needs_faiss
@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "annoy"}, "kind must be one of"),
    ({"kind": "exact", "nlist": 4}, "not to kind='exact'"),
    ({"kind": "hnsw", "nlist": 4}, r"\['nlist'\] do not apply to kind='hnsw'"),
    ({"kind": "ivf_flat", "nlist": 0}, "nlist must be"),
    ({"kind": "ivf_flat", "nlist": 8, "nprobe": 9}, "nprobe must be"),
    ({"kind": "ivf_pq", "m": 7}, "m must be an integer >= 1 dividing"),
    ({"kind": "ivf_pq", "nbits": 20}, "nbits must be"),
    ({"kind": "ivf_flat", "nlist": 2.5}, "nlist must be an integer"),
    ({"kind": "hnsw", "ef_search": 0}, "ef_search must be"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Index(clustered(300, dim=32)[0], **kwargs)


@pytest.mark.skipif(not faiss_missing, reason="faiss is installed")
def test_without_faiss_the_error_says_how_to_install():
    with pytest.raises(ImportError, match="pip install"):
        Index(clustered(300, dim=32)[0], kind="hnsw")


def test_benchmark_runs_on_stored_embeddings(tmp_path, capsys):
    """`benchmarks/ann.py --embeddings`: the queries are held-out rows; exact recall is 1 and the table names
    every kind (its 1 M / trained-model numbers are in docs/guides/evaluation.md)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "ann.py"
    spec = importlib.util.spec_from_file_location("ann_benchmark", path)
    ann = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ann)
    stored = tmp_path / "embeddings.npy"
    np.save(stored, np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32))
    gallery, queries = ann.split_stored(str(stored), 100)
    assert gallery.shape == (2900, 16) and queries.shape == (100, 16)
    assert len({row.tobytes() for row in np.concatenate([gallery, queries])}) == 3000  # a split, no row lost
    ann.main(["--embeddings", str(stored), "--queries", "100", "--kinds", "exact,ivf_flat", "--set",
              "ivf_flat.nlist=16", "--set", "ivf_flat.nprobe=16"])
    out = capsys.readouterr().out
    assert "| exact | – | 1.0000 |" in out and "| ivf_flat |" in out
    with pytest.raises(SystemExit, match="N > --queries"):
        ann.split_stored(str(stored), 5000)
