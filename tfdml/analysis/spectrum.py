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


def class_singular_value_spectra(embeddings, labels, path=None, classes=None, max_classes=10, log_scale=True):
    """Class-conditioned singular-value spectra (Roth et al. 2020, Fig. 10): for each class, the
    singular values of the embedding matrix of its samples, normalised to sum 1 and sorted descending.

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) class labels.
        path: PNG path (one line per class, the mean spectrum in black), or None.
        classes: the classes to draw (default: the first `max_classes` classes with ≥ 2 samples).
        max_classes: how many classes by default.
        log_scale: logarithmic y axis.

    Returns:
        {class: (min(n_c, D),) normalised singular values}.

    Raises:
        ValueError: mismatched inputs, or a requested class with fewer than 2 samples.
    """
    from tfdml.metrics.validation import check_embeddings_and_labels

    embeddings, labels = check_embeddings_and_labels(embeddings, labels)
    sizes = {c: int(np.sum(labels == c)) for c in np.unique(labels)}
    if classes is None:
        classes = [c for c in sorted(sizes) if sizes[c] >= 2][:max_classes]
    spectra = {}
    for c in classes:
        if sizes.get(c, 0) < 2:
            raise ValueError(f"classes: class {c!r} has {sizes.get(c, 0)} sample(s); a spectrum needs at least 2.")
        values = singular_values(embeddings[labels == c])
        spectra[c] = values / values.sum() if values.sum() > 0 else values
    fig, (ax,) = figure()
    for c, values in spectra.items():
        ax.plot(np.arange(1, len(values) + 1), values, alpha=0.5, label=f"class {c}")
    if spectra:
        width = min(len(v) for v in spectra.values())
        mean = np.mean([v[:width] for v in spectra.values()], axis=0)
        ax.plot(np.arange(1, width + 1), mean, color="black", linewidth=2, label="mean")
    if log_scale:
        ax.set_yscale("log")
    ax.set_title("Class-conditioned singular value spectra")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("normalised singular value")
    ax.grid(alpha=0.3)
    if len(spectra) <= 10:
        ax.legend(fontsize=7)
    save(fig, path)
    return spectra
