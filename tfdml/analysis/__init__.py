"""Analysis tools and plots from the five papers; each returns data and can save a PNG."""
from tfdml.analysis.expansion_analysis import (
    ExpansionMonitor,
    distance_heatmap,
    hard_negative_ratio,
    occlusion_robustness,
    plot_expansion_recall,
    synthetic_query_recall,
    synthetic_test_queries,
)
from tfdml.analysis.plotting import line_plot
from tfdml.analysis.projector import EmbeddingProjector, write_projector, write_split_projector
from tfdml.analysis.report import write_report, write_training_curves
from tfdml.analysis.retrieval_examples import RetrievalExamples, retrieval_grid
from tfdml.analysis.sharing import (
    cross_class_label_agreement,
    cross_class_neighbors,
    generalization_gap,
    head_embeddings,
    head_recalls,
    plot_cross_class_neighbors,
    plot_head_curves,
    read_history,
    reinitialized_head,
    write_sharing_report,
)
from tfdml.analysis.similarity_plots import nearest_same_and_different, same_vs_different
from tfdml.analysis.correlation import metric_table, write_correlation_report
from tfdml.analysis.spectrum import class_singular_value_spectra, singular_value_spectrum
from tfdml.analysis.taps import TapRecallHistory, plot_tap_metrics, plot_tap_recalls, tap_embedder
from tfdml.analysis.tsne import joint_tsne, yoked_runs_tsne, yoked_tsne, yoked_tsne_maps

__all__ = [
    "EmbeddingProjector",
    "ExpansionMonitor",
    "RetrievalExamples",
    "TapRecallHistory",
    "class_singular_value_spectra",
    "cross_class_label_agreement",
    "cross_class_neighbors",
    "distance_heatmap",
    "generalization_gap",
    "head_embeddings",
    "head_recalls",
    "hard_negative_ratio",
    "joint_tsne",
    "line_plot",
    "metric_table",
    "retrieval_grid",
    "nearest_same_and_different",
    "occlusion_robustness",
    "plot_cross_class_neighbors",
    "plot_expansion_recall",
    "plot_head_curves",
    "plot_tap_metrics",
    "plot_tap_recalls",
    "read_history",
    "reinitialized_head",
    "same_vs_different",
    "singular_value_spectrum",
    "synthetic_query_recall",
    "synthetic_test_queries",
    "tap_embedder",
    "write_correlation_report",
    "write_projector",
    "write_report",
    "write_split_projector",
    "write_training_curves",
    "write_sharing_report",
    "yoked_tsne",
    "yoked_tsne_maps",
    "yoked_runs_tsne",
]
