"""Exact nearest-neighbour retrieval: `Index` (search, save/load, optional faiss backend) and the
search and rank code that evaluation and exported SavedModels share.

- `tfdml.retrieval.exact`: float32 distance estimates with a proven error bound, exact distances;
- `tfdml.retrieval.search`: exact top-k (candidates, exact re-ranking, certificate) in TensorFlow;
- `tfdml.retrieval.ranking`: exact rank statistics for the retrieval metrics.
"""
from tfdml.retrieval.index import BACKENDS, Index, SearchResults
from tfdml.retrieval.ranking import RankedRelevance, rank_relevance
from tfdml.retrieval.search import Searcher

__all__ = ["BACKENDS", "Index", "RankedRelevance", "SearchResults", "Searcher", "rank_relevance"]
