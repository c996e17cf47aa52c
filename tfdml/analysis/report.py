"""An evaluation report: metrics.json, plots and a short report.md embedding them."""
import json
import os

import numpy as np

from tfdml.analysis.expansion_analysis import distance_heatmap, synthetic_test_queries
from tfdml.analysis.similarity_plots import same_vs_different
from tfdml.analysis.spectrum import singular_value_spectrum
from tfdml.analysis.tsne import joint_tsne
from tfdml.metrics import evaluate_embeddings

_EXPLANATIONS = {
    "spectrum.png": "Singular values of the test embeddings (Roth et al.): a flatter spectrum "
                    "(lower ρ) uses more embedding directions.",
    "same_vs_different.png": "Per point, similarity to its nearest same-class point (x) vs nearest "
                             "other-class point (y); cyan = correct at rank 1 (Xuan et al.).",
    "distance_heatmap.png": "Distances between the first and second sample of each class; a dark "
                            "diagonal means classes are tight (EE paper Fig. 7).",
    "synthetic_queries.png": "Recall@1 of EE synthetic points made from test pairs, used as queries "
                             "(EE paper Fig. 9).",
    "joint_tsne.png": "One t-SNE of train and test embeddings: per-class colours and train (red) vs "
                      "test (blue) (Xuan et al.).",
}


def write_report(report_dir, embeddings, labels, train_embeddings=None, train_labels=None, ks=(1, 2, 4, 8),
                 title="Evaluation report", max_tsne_points=2000, seed=0):
    """Writes metrics.json, the plots and report.md into `report_dir`.

    Args:
        embeddings, labels: test embeddings and labels.
        train_embeddings, train_labels: optional training embeddings (adds the
            train panel of the same-vs-different plot and the joint t-SNE).
        ks: Recall@K values.
        max_tsne_points: subsample size per split for t-SNE.

    Returns:
        dict of all metrics.
    """
    os.makedirs(report_dir, exist_ok=True)
    metrics = evaluate_embeddings(embeddings, labels, ks=ks)
    with open(os.path.join(report_dir, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    path = lambda name: os.path.join(report_dir, name)  # noqa: E731
    plots = ["spectrum.png", "same_vs_different.png", "distance_heatmap.png", "synthetic_queries.png"]
    singular_value_spectrum(embeddings, path("spectrum.png"))
    splits = {"test": (embeddings, labels)}
    if train_embeddings is not None:
        splits = {"train": (train_embeddings, train_labels), **splits}
    same_vs_different(splits, path("same_vs_different.png"))
    distance_heatmap(embeddings, labels, path("distance_heatmap.png"))
    synthetic_test_queries(embeddings, labels, path=path("synthetic_queries.png"))
    if train_embeddings is not None:
        rng = np.random.default_rng(seed)
        tr = rng.permutation(len(train_labels))[:max_tsne_points]
        te = rng.permutation(len(labels))[:max_tsne_points]
        joint_tsne(np.asarray(train_embeddings)[tr], np.asarray(train_labels)[tr], np.asarray(embeddings)[te],
                   np.asarray(labels)[te], path("joint_tsne.png"), seed=seed)
        plots.append("joint_tsne.png")
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {value:.4f} |" for key, value in metrics.items()]
    for name in plots:
        lines += ["", f"## {name[:-4].replace('_', ' ')}", "", _EXPLANATIONS[name], "", f"![{name}]({name})"]
    with open(path("report.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return metrics
