"""The seam through which Embedding Expansion enters every pair-based loss.

A pair-based loss asks for the `PairMatrices` of its batch in one metric and uses
`positive` for positive pairs and `negative` for negative pairs. Without an
expansion both are the same matrix; with one, `negative` holds the EE-pooled
values (`tfdml.EmbeddingExpansion.pooled_matrix`). Nothing else in a loss knows
about EE. This module also (de)serialises the `expansion` constructor argument.
"""
import tensorflow as tf

from tfdml import distances
from tfdml.expansion import EmbeddingExpansion, metric_from_gram
from tfdml.losses.ops import pair_masks

#: How a loss with its own printed EE equation (lifted, multi-similarity) uses
#: pooled values: "paper" — the EE paper's equation for that loss; "pooled" —
#: the loss's own equation with every negative value replaced by the pooled
#: one, in mining and loss alike (the rule of every other pair-based loss).
EE_FORMS = ("paper", "pooled")


class PairMatrices:
    """Pairwise matrices of one batch used by pair-based losses.

    Attributes:
        positive: (B, B) metric between original points (used for positive pairs).
        negative: (B, B) metric for negative pairs: EE-pooled when an expansion is
            active, otherwise the same tensor as `positive`.
        positive_mask, negative_mask: (B, B) bool masks (positive excludes i = j);
            with a loss's `pair_mining`, only the mined pairs.
        embedding_dim: the embedding dimension D (static int or None).
        metric: the `tfdml.distances.METRICS` name of the matrices (None if
            another measure).
        source_embeddings: the (B, D) embeddings the loss was called with
            (before its normalisation), when built by a loss; None otherwise.
            Miners that measure their own geometry ("angular") read them.
    """

    source_embeddings = None

    def __init__(self, positive, negative, positive_mask, negative_mask, embedding_dim=None, metric=None):
        self.positive = positive
        self.negative = negative
        self.positive_mask = positive_mask
        self.negative_mask = negative_mask
        self.embedding_dim = embedding_dim
        self.metric = metric


def resolve_pooling(expansion, default_pooling):
    """The EE pooling in use: the expansion's own `pooling`, else the loss's default."""
    return (expansion.pooling if expansion is not None else None) or default_pooling


def pair_matrices(embeddings, labels, metric, expansion=None, pooling="class", normalized=True,
                  detach_columns=False):
    """Builds `PairMatrices` from the Gram matrix of `embeddings`.

    Args:
        embeddings: (B, D) embeddings, already normalised/scaled as the loss wants.
        labels: (B,) integer labels.
        metric: a `tfdml.distances.METRICS` name.
        expansion: `EmbeddingExpansion` or None. With `n_points == 0` the result is
            exactly the one without expansion.
        pooling: pooling used when `expansion.pooling` is None.
        normalized: the embeddings are L2-normalised (bounded norms). For raw
            embeddings (False) nothing may overflow at any finite magnitude:
            dot products come from `tfdml.distances.saturating_gram`, other
            metrics are computed on the embeddings divided by
            `tfdml.distances.batch_scale` and rescaled (exact: distances are
            homogeneous, cosines scale-invariant). With an expansion that
            L2-normalises its synthetic points the divisor is at least
            dtype max^(-1/4) (2.3e-10 in float32), so the unit-norm synthetic
            points stay representable next to tiny embeddings.
        detach_columns: the Gram matrix is ⟨x_i, sg(x_j)⟩: gradients reach each
            row's embedding only (a memory of stop-gradient embeddings holds the
            batch as columns, `tfdml.losses.CrossBatchMemory`). Not for
            unnormalised "dot".
    """
    positive_mask, negative_mask = pair_masks(labels)
    columns = tf.stop_gradient if detach_columns else tf.identity
    dim = embeddings.shape[-1]
    scale = None
    if normalized:
        gram = tf.matmul(embeddings, columns(embeddings), transpose_b=True)
    elif metric == "dot":
        if detach_columns:
            raise ValueError("detach_columns is not available for the unnormalised dot product.")
        gram = distances.saturating_gram(embeddings)
    else:
        scale = distances.batch_scale(embeddings)
        if expansion is not None and expansion.n_points > 0 and expansion.normalize:
            # Unit-norm synthetic points have norm 1/scale in the scaled frame: a floor on the scale keeps
            # their squared norms (1/scale²) finite for tiny embeddings.
            scale = tf.maximum(scale, tf.constant(embeddings.dtype.max ** -0.25, scale.dtype))
        scaled = embeddings / scale
        gram = tf.matmul(scaled, columns(scaled), transpose_b=True)
    if expansion is None or expansion.n_points == 0:
        original = pooled = metric_from_gram(gram, metric)
    else:
        synthetic_norm = 1.0 if scale is None else 1.0 / scale
        original, pooled = expansion.pooled_matrix(gram, labels, metric, resolve_pooling(expansion, pooling),
                                                   synthetic_norm)
    if scale is not None:
        rescaled = distances.rescale(original, scale, metric)
        pooled = rescaled if pooled is original else distances.rescale(pooled, scale, metric)
        original = rescaled
    return PairMatrices(original, pooled, positive_mask, negative_mask, dim, metric)


def append_references(matrices, queries, labels, references, reference_labels, usable, metric,
                      negative_usable=None):
    """Extends a batch's `PairMatrices` with one column per reference point (a memory of past embeddings).

    Row i stays anchor i of the batch; the columns are the batch's points (as in
    `matrices`, EE-pooled negatives included) followed by the references, whose
    values are the plain `metric` between query and reference (no EE pooling).

    Args:
        matrices: (B, B) `PairMatrices` of the batch.
        queries: (B, D) the batch's embeddings as the loss prepared them.
        labels: (B,) labels of the batch.
        references: (M, D) reference embeddings, prepared like `queries`.
        reference_labels: (M,) their labels.
        usable: (M,) bool, references that take part (others are in neither mask).
        metric: a `tfdml.distances.METRICS` name.
        negative_usable: (M,) bool, references that take part as negatives
            (default `usable`; e.g. synthetic points are negatives only).

    Returns:
        `PairMatrices` of shape (B, B + M).
    """
    values = distances.pairwise(queries, references, metric)
    same = tf.equal(labels[:, None], reference_labels[None, :])
    negative_usable = usable if negative_usable is None else negative_usable
    return PairMatrices(
        tf.concat([matrices.positive, values], axis=1),
        tf.concat([matrices.negative, values], axis=1),
        tf.concat([matrices.positive_mask, tf.logical_and(same, usable[None, :])], axis=1),
        tf.concat([matrices.negative_mask, tf.logical_and(tf.logical_not(same), negative_usable[None, :])], axis=1),
        matrices.embedding_dim,
    )


def serialize_expansion(expansion):
    """The config dict of an `EmbeddingExpansion` (None stays None)."""
    return None if expansion is None else expansion.get_config()


def deserialize_expansion(expansion):
    """Accepts None, an `EmbeddingExpansion`, its config dict, or an int n_points."""
    if expansion is None or isinstance(expansion, EmbeddingExpansion):
        return expansion
    if isinstance(expansion, dict):
        config = expansion.get("config", expansion)
        return EmbeddingExpansion(**config)
    if isinstance(expansion, int) and not isinstance(expansion, bool):
        return EmbeddingExpansion(n_points=expansion)
    raise ValueError(
        "expansion must be None, an EmbeddingExpansion, its config dict or an int "
        f"n_points; got {expansion!r}."
    )
