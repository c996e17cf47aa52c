"""Nearest-neighbour retrieval: `Index` (exact or approximate search, save/load, adding items) and the
exact search and rank code that evaluation and exported SavedModels share.

- `tfdml.retrieval.exact`: float32 distance estimates with a proven error bound, exact distances;
- `tfdml.retrieval.search`: exact top-k (candidates, exact re-ranking, certificate) in TensorFlow;
- `tfdml.retrieval.ann`: approximate faiss indexes (IVF-Flat, IVF-PQ, HNSW) behind `Index(kind=...)`;
- `tfdml.retrieval.ranking`: exact rank statistics for the retrieval metrics.
"""
from tfdml.retrieval.ann import KINDS
from tfdml.retrieval.index import BACKENDS, Index, SearchResults
from tfdml.retrieval.ranking import RankedRelevance, rank_relevance
from tfdml.retrieval.search import Searcher

__all__ = ["BACKENDS", "KINDS", "Index", "RankedRelevance", "SearchResults", "Searcher", "rank_relevance"]
