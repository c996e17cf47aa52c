"""An evaluation report: metrics.json, plots and a short report.md embedding them."""
import json
import os

import numpy as np

from tfdml.analysis.expansion_analysis import distance_heatmap, plot_expansion_recall, synthetic_test_queries
from tfdml.analysis.plotting import figure, save
from tfdml.analysis.sharing import read_history
from tfdml.analysis.similarity_plots import same_vs_different
from tfdml.analysis.spectrum import singular_value_spectrum
from tfdml.analysis.taps import plot_tap_metrics, tap_metric_names
from tfdml.analysis.tsne import joint_tsne
from tfdml.metrics import evaluate_embeddings

_EXPLANATIONS = {
    "spectrum.png": "Singular values of the test embeddings (Roth et al.): a flatter spectrum "
                    "(lower ρ) uses more embedding directions.",
    "same_vs_different.png": "Per point, similarity to its nearest same-class point (x) vs nearest "
                             "other-class point (y); cyan = correct at rank 1 (Xuan et al.).",
    "distance_heatmap.png": "Distances between the first and second sample of each class; a dark "
                            "diagonal means classes are tight (EE paper Fig. 7).",
    "synthetic_queries.png": "Recall@1 of EE synthetic points made from test pairs, used as queries against "
                             "the test set without the pair's own two points (EE paper Fig. 9).",
    "joint_tsne.png": "One t-SNE of train and test embeddings: per-class colours and train (red) vs "
                      "test (blue) (Xuan et al.).",
}


def plot_training_curves(history, path=None):
    """Losses and validation metrics per epoch of a run's `log.csv`, two panels.

    Args:
        history: {column: [value per epoch]} (`read_history`). Left panel: the
            columns ending in "loss"; right panel: the other "val_…" columns
            (e.g. `val_pool_recall@1`). Epochs without a value (blank cells) are
            gaps.
        path: PNG path or None.

    Returns:
        `path`.
    """
    fig, (loss_ax, metric_ax) = figure(ncols=2)
    for key, values in sorted(history.items()):
        epochs = np.arange(1, len(values) + 1)
        if key.endswith("loss"):
            loss_ax.plot(epochs, values, marker="o", label=key)
        elif key.startswith("val_"):
            metric_ax.plot(epochs, values, marker="o", label=key[len("val_"):])
    for ax, title in ((loss_ax, "training loss"), (metric_ax, "validation metrics")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend(fontsize=7)
    save(fig, path)
    return path


def write_training_curves(report_dir, log_path):
    """Plots the training curves of a run and the analysis curves it logged into `report_dir`.

    From the run's `log.csv`: the loss and validation metrics per epoch as
    `training_curves.png` (whenever the log has a loss column); EE Fig. 3 (`ee_*_recall@1` columns) as
    `expansion_recall.png`, and one `tap_<metric>.png` per metric of the
    `tap_{tap}_{train|test}_{metric}` columns (Vo & Hays Figs. 2–7, Xuan et al.,
    Roth et al.'s ρ/π on training embeddings), a panel per split and a line per tap.

    Args:
        report_dir: output folder.
        log_path: the run's `log.csv`.

    Returns:
        list of (PNG file name, one-line explanation), empty when the log has
        neither a loss nor analysis columns.
    """
    history = read_history(log_path)
    os.makedirs(report_dir, exist_ok=True)
    written = []
    if any(key.endswith("loss") for key in history):
        plot_training_curves(history, os.path.join(report_dir, "training_curves.png"))
        written.append(("training_curves.png", "Training loss and validation metrics per epoch, from the run's "
                                               "log.csv."))
    if {"ee_synthetic_recall@1", "ee_original_recall@1"} <= set(history):
        plot_expansion_recall(history, os.path.join(report_dir, "expansion_recall.png"))
        written.append(("expansion_recall.png", "Recall@1 of EE's synthetic points (queries against the original "
                                                "points) and of the original training points over training (EE "
                                                "paper Fig. 3)."))
    for metric in tap_metric_names(history):
        name = f"tap_{metric.replace('@', '_at_')}.png"
        plot_tap_metrics(history, metric, os.path.join(report_dir, name))
        written.append((name, f"{metric} of every tap on the training and test splits over training (Vo & Hays "
                              "Figs. 2-7, Xuan et al. Tables 1-2; ρ/π on training embeddings: Roth et al.)."))
    return written


def write_report(report_dir, embeddings, labels, train_embeddings=None, train_labels=None, ks=(1, 2, 4, 8),
                 title="Evaluation report", max_tsne_points=2000, seed=0, run_log=None, class_names=None,
                 train_class_names=None, split="test"):
    """Writes metrics.json, the plots and report.md into `report_dir`.

    Args:
        embeddings: test embeddings.
        labels: test labels.
        train_embeddings: optional training embeddings (adds the train panel
            of the same-vs-different plot and the joint t-SNE).
        train_labels: labels of `train_embeddings`.
        ks: Recall@K values.
        max_tsne_points: subsample size per split for t-SNE.
        run_log: optional `log.csv` of the training run: adds its training
            and analysis curves (`write_training_curves`).
        class_names: optional class names per label id of the test split
            (`Split.class_names`) for the plots.
        train_class_names: the same for the training split.
        split: name of the split of `embeddings` in the plots' titles.

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
    splits = {split: (embeddings, labels)}
    if train_embeddings is not None:
        splits = {"train": (train_embeddings, train_labels), **splits}
    same_vs_different(splits, path("same_vs_different.png"))
    distance_heatmap(embeddings, labels, path("distance_heatmap.png"), split=split, class_names=class_names)
    synthetic_test_queries(embeddings, labels, path=path("synthetic_queries.png"))
    if train_embeddings is not None:
        rng = np.random.default_rng(seed)
        tr = rng.permutation(len(train_labels))[:max_tsne_points]
        te = rng.permutation(len(labels))[:max_tsne_points]
        joint_tsne(np.asarray(train_embeddings)[tr], np.asarray(train_labels)[tr], np.asarray(embeddings)[te],
                   np.asarray(labels)[te], path("joint_tsne.png"), seed=seed, train_class_names=train_class_names,
                   test_class_names=class_names)
        plots.append("joint_tsne.png")
    explanations = dict(_EXPLANATIONS)
    if run_log is not None:
        curves = write_training_curves(report_dir, run_log)
        explanations.update(curves)
        plots += [name for name, _ in curves]
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {value:.4f} |" for key, value in metrics.items()]
    for name in plots:
        lines += ["", f"## {name[:-4].replace('_', ' ')}", "", explanations[name], "", f"![{name}]({name})"]
    with open(path("report.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return metrics
