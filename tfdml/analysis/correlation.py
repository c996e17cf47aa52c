"""Metric correlations across many runs (Roth et al. 2020, Figs. 4 and 5).

Each run directory (a `train.py` / `sweep.py` run with a `log.csv`) contributes one
row of metrics: the test metrics of its best epoch (`val_<tap>_<metric>`: Recall@K,
NMI, …) and the embedding-structure metrics logged by `analysis.tap_metrics`
(`tap_<tap>_<split>_<metric>`: ρ, π_intra, π_inter, π_ratio, …), renamed
`<split>_<metric>` (e.g. `train_rho`). The best epoch is the one with the highest
`val_<tap>_recall@1`; a metric not measured at that epoch takes its last measured
value before it (tap metrics run every `analysis.every` epochs).

Fig. 4: the Pearson correlation matrix of all metrics over the runs. Fig. 5: each
structure metric against Recall@1 over the runs, with its correlation.

    python -m tfdml.analysis.correlation runs/roth_table2 --tap fc --output runs/roth_fig4_5
"""
import argparse
import csv
import math
import os

import numpy as np

from tfdml.analysis.plotting import figure, save

#: Metrics plotted against Recall@1 (Fig. 5) when present: ρ and π of the training embeddings.
STRUCTURE_METRICS = ("train_rho", "train_pi_intra", "train_pi_inter", "train_pi_ratio")


def find_run_dirs(paths):
    """Every directory at or below `paths` holding a `log.csv`, sorted."""
    found = set()
    for path in paths:
        if not os.path.isdir(path):
            raise ValueError(f"Not a directory: {path!r} (expected run directories or folders holding them).")
        for root, _, files in os.walk(path):
            if "log.csv" in files:
                found.add(root)
    return sorted(found)


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def run_metrics(run_dir, tap="fc"):
    """{metric: value} of one run at its best epoch (see the module docstring); {} without evaluations."""
    with open(os.path.join(run_dir, "log.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    monitor = f"val_{tap}_recall@1"
    scores = [_float(row.get(monitor)) for row in rows]
    if not rows or all(math.isnan(v) for v in scores):
        return {}
    best = int(np.nanargmax(scores))
    metrics = {}
    for column in rows[0]:
        if column.startswith(f"val_{tap}_"):
            name = column[len(f"val_{tap}_"):]
        elif column.startswith(f"tap_{tap}_"):
            name = column[len(f"tap_{tap}_"):]
        else:
            continue
        measured = [_float(row.get(column)) for row in rows[:best + 1]]
        measured = [v for v in measured if not math.isnan(v)]
        if measured:
            metrics[name] = measured[-1]
    return metrics


def metric_table(run_dirs, tap="fc"):
    """(run directories, metric names, (runs × metrics) array) over the runs with evaluations; a metric
    missing in a run is NaN there."""
    rows = [(run_dir, run_metrics(run_dir, tap)) for run_dir in run_dirs]
    rows = [(run_dir, metrics) for run_dir, metrics in rows if metrics]
    names = sorted({name for _, metrics in rows for name in metrics}, key=_metric_order)
    table = np.array([[metrics.get(name, math.nan) for name in names] for _, metrics in rows], dtype=float)
    return [run_dir for run_dir, _ in rows], names, table.reshape(len(rows), len(names))


def _metric_order(name):
    head = name.split("@")[0]
    k = int(name.split("@")[1]) if "@" in name and name.split("@")[1].isdigit() else 0
    return (not name.startswith("recall"), name.startswith(("train_", "test_")), head, k, name)


def pearson(x, y):
    """Pearson correlation of two vectors over the entries finite in both (NaN with < 3 such entries or
    a constant vector)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return math.nan
    x, y = x[keep] - x[keep].mean(), y[keep] - y[keep].mean()
    denominator = math.sqrt(float(np.sum(x * x) * np.sum(y * y)))
    return float(np.sum(x * y) / denominator) if denominator > 0 else math.nan


def correlation_matrix(table):
    """(M × M) Pearson correlations between the columns of a (runs × M) table (pairwise-complete)."""
    columns = table.shape[1]
    matrix = np.full((columns, columns), math.nan)
    for i in range(columns):
        for j in range(columns):
            matrix[i, j] = pearson(table[:, i], table[:, j])
    return matrix


def plot_correlation_matrix(names, matrix, path, title="Metric correlation over runs"):
    """Fig. 4: the correlation matrix as a heat map with its values."""
    fig, (ax,) = figure(width=max(5.0, 0.55 * len(names) + 2), height=max(4.2, 0.5 * len(names) + 1.5))
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    return save(fig, path)


def plot_against_recall(names, table, path, metrics=STRUCTURE_METRICS, recall="recall@1"):
    """Fig. 5: each of `metrics` (those present) against `recall` over the runs, with their correlation.

    Returns:
        (path, {metric: correlation}); path is None when no metric is present.
    """
    if recall not in names:
        raise ValueError(f"No {recall!r} column; the runs logged {names}.")
    present = [m for m in metrics if m in names]
    if not present:
        return None, {}
    y = table[:, names.index(recall)]
    fig, axes = figure(ncols=len(present), width=4.0)
    correlations = {}
    for ax, metric in zip(axes, present):
        x = table[:, names.index(metric)]
        correlations[metric] = pearson(x, y)
        ax.scatter(x, 100 * y, s=18)
        ax.set_xlabel(metric)
        ax.set_ylabel(f"{recall} (%)")
        ax.set_title(f"r = {correlations[metric]:.2f}")
        ax.grid(alpha=0.3)
    return save(fig, path), correlations


def write_correlation_report(paths, output, tap="fc"):
    """Reads every run below `paths` and writes into `output`: `metrics.csv` (one row per run),
    `correlation.csv` and `correlation_matrix.png` (Fig. 4), `structure_vs_recall.png` (Fig. 5).

    Returns:
        {"runs": [...], "names": [...], "matrix": array, "structure": {metric: correlation with R@1},
        "files": [written paths]}.

    Raises:
        ValueError: fewer than three runs with evaluations (no correlation is defined).
    """
    runs, names, table = metric_table(find_run_dirs(paths), tap)
    if len(runs) < 3:
        raise ValueError(f"Correlations need at least 3 evaluated runs with tap {tap!r}; found {len(runs)} "
                         f"below {list(paths)}.")
    os.makedirs(output, exist_ok=True)
    matrix = correlation_matrix(table)
    files = [os.path.join(output, "metrics.csv"), os.path.join(output, "correlation.csv")]
    with open(files[0], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run"] + names)
        writer.writerows([run] + list(row) for run, row in zip(runs, table))
    with open(files[1], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([""] + names)
        writer.writerows([name] + list(row) for name, row in zip(names, matrix))
    files.append(plot_correlation_matrix(names, matrix, os.path.join(output, "correlation_matrix.png")))
    scatter, structure = plot_against_recall(names, table, os.path.join(output, "structure_vs_recall.png"))
    if scatter:
        files.append(scatter)
    return {"runs": runs, "names": names, "matrix": matrix, "structure": structure, "files": files}


def main(argv=None):
    """Command line of the correlation report: `paths` (runs or folders of runs), `--tap`,
    `--output`; prints each structure metric's correlation with Recall@1 and the written files.

    Returns:
        The report of `write_correlation_report`.
    """
    parser = argparse.ArgumentParser(description="Roth et al. Figs. 4-5: metric correlations over runs.")
    parser.add_argument("paths", nargs="+", help="run directories or folders holding them (e.g. a sweep)")
    parser.add_argument("--tap", default="fc", help="the tap whose metrics are read (default fc)")
    parser.add_argument("--output", required=True, help="folder for the CSV files and figures")
    args = parser.parse_args(argv)
    report = write_correlation_report(args.paths, args.output, args.tap)
    for metric, value in report["structure"].items():
        print(f"corr({metric}, recall@1) = {value:.3f}")
    print("\n".join(report["files"]))
    return report


if __name__ == "__main__":
    main()
