"""Singular-value spectrum of embeddings (Roth et al. 2020, Fig. 8)."""
import numpy as np

from tfdml.analysis.plotting import figure, save
from tfdml.metrics import singular_values, spectral_decay


def singular_value_spectrum(embeddings, path=None, log_scale=True):
    """Normalised singular values (sum 1, descending) with ρ in the plot title.

    Returns:
        (D,) normalised singular values.
    """
    values = singular_values(embeddings)
    normalised = values / values.sum() if values.sum() > 0 else values
    fig, (ax,) = figure()
    ax.plot(np.arange(1, len(normalised) + 1), normalised, marker=".")
    if log_scale:
        ax.set_yscale("log")
    ax.set_title(f"Singular value spectrum (ρ = {spectral_decay(embeddings):.3f})")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("normalised singular value")
    ax.grid(alpha=0.3)
    save(fig, path)
    return normalised
