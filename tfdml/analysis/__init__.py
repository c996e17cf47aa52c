"""Analysis tools and plots from the five papers; each returns data and can save a PNG."""
from tfdml.analysis.expansion_analysis import (
    ExpansionMonitor,
    distance_heatmap,
    hard_negative_ratio,
    occlusion_robustness,
    synthetic_query_recall,
    synthetic_test_queries,
)
from tfdml.analysis.plotting import line_plot
from tfdml.analysis.report import write_report
from tfdml.analysis.similarity_plots import nearest_same_and_different, same_vs_different
from tfdml.analysis.spectrum import singular_value_spectrum
from tfdml.analysis.taps import TapRecallHistory, plot_tap_recalls
from tfdml.analysis.tsne import joint_tsne, yoked_tsne

__all__ = [
    "ExpansionMonitor",
    "TapRecallHistory",
    "distance_heatmap",
    "hard_negative_ratio",
    "joint_tsne",
    "line_plot",
    "nearest_same_and_different",
    "occlusion_robustness",
    "plot_tap_recalls",
    "same_vs_different",
    "singular_value_spectrum",
    "synthetic_query_recall",
    "synthetic_test_queries",
    "write_report",
    "yoked_tsne",
]
