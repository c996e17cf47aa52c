"""Shared matplotlib helpers (Agg backend: files only, no display needed)."""
import os

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def figure(ncols=1, width=5.0, height=4.2):
    """A figure with `ncols` side-by-side axes (a list)."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def save(fig, path):
    """Saves `fig` as PNG at `path` (creating folders) and closes it; returns `path`."""
    if path is None:
        plt.close(fig)
        return None
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def line_plot(x, series, path, title, xlabel, ylabel, ylim=None):
    """One or more named lines (`series`: {label: values}) in one axes."""
    fig, (ax,) = figure()
    for label, values in series.items():
        ax.plot(x, values, marker="o", label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if len(x) <= 20 and all(float(v).is_integer() for v in x):
        ax.set_xticks(list(x))
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def plot_epochs(ax, values, label):
    """Plots per-epoch `values` (epoch 1, 2, …) on `ax`, skipping NaN epochs (not measured)."""
    values = np.asarray(values, dtype=float)
    epochs = np.arange(1, len(values) + 1)
    keep = np.isfinite(values)
    ax.plot(epochs[keep], values[keep], marker="o", label=label)
