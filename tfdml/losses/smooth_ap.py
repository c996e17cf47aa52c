"""Smooth-AP (Brown et al., ECCV 2020): average precision with sigmoid-relaxed ranks."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_mean
from tfdml.losses.registry import register


@register("smooth_ap")
class SmoothAPLoss(MetricLoss):
    """Smooth-AP (Brown et al., "Smooth-AP: Smoothing the Path Towards
    Large-Scale Image Retrieval", ECCV 2020): one minus the mean, over the
    batch's queries, of average precision with every rank's indicator replaced
    by a sigmoid of temperature τ.

    Each sample q of the batch is a query and the rest of the batch its
    retrieval set: the positive set P_q (samples j ≠ q of q's class) and the
    negative set N_q (the other classes). On cosine similarities s_qj of
    L2-normalised embeddings, with D_ij = s_qj − s_qi and the sigmoid
    G(D; τ) = 1 / (1 + e^{−D/τ}):

        AP_q = (1/|P_q|) Σ_{i ∈ P_q} (1 + Σ_{j ∈ P_q, j≠i} G(D_ij; τ))
                                   / (1 + Σ_{j ∈ P_q, j≠i} G(D_ij; τ) + Σ_{j ∈ N_q} G(D_ij; τ))

    (the numerator is i's smoothed rank among the positives, the denominator
    its smoothed rank in the whole retrieval set), and

        loss = mean of (1 − AP_q) over the queries with a positive (0 if none).

    This is the paper's Smooth-AP (its relaxed ranking R(i, S) = 1 + Σ_{j≠i}
    G(D_ij; τ) with the retrieval set "the rest of the mini-batch"); the
    paper's equation numbers could not be checked offline. The default
    τ = 0.01 is the paper's (and pytorch-metric-learning's).

    `include_query=True` is the form of the authors' released code and of
    pytorch-metric-learning's `SmoothAPLoss`: the query itself belongs to its
    own positive set and retrieval set (with s_qq = 1 it is ranked first), so
    P_q = q's whole class, the sums over j ≠ i include j = q, and every query
    counts in the mean (a lone sample of its class has AP = 1 / its smoothed
    rank). pytorch-metric-learning 2.9 requires a batch of equal-sized classes
    in contiguous blocks and groups it into blocks of (number of classes)
    samples, so it computes this form only when the batch holds as many
    samples per class as classes; tfdml takes any label layout.

    Embedding Expansion: every negative similarity s_qj (j ∈ N_q, in D_ij)
    is the EE-pooled one (the maximum over the pools; default pooling
    "class"): each negative is ranked at its hardest synthetic similarity.
    Positives and queries stay original points.

    Memory: O(B³) — one (query, item, item) sigmoid tensor and its gradient
    (B = 256: 16.8M entries, 67 MB in float32, per tensor).

    Args:
        temperature: τ, the sigmoid's temperature.
        include_query: count the query in its own positive and retrieval sets
            (the authors' code / pytorch-metric-learning).
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (τ = 1. Query 0: its positive has s = 0, its negative s = −1, so
    AP = 1 / (1 + G(−1)); query 1: positive and negative both have s = 0,
    AP = 1 / (1 + G(0)) = 2/3; query 2 has no positive):

    >>> loss = tfdml.losses.SmoothAPLoss(temperature=1.0)
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> round(float(value), 4)  # 1 − (1/(1 + 1/(1 + e)) + 2/3)/2
    0.2726
    """

    config_args = ("temperature", "include_query", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, temperature=0.01, include_query=False, expansion=None, name="smooth_ap_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.temperature = check_number(temperature, "temperature", greater_than=0.0)
        if not isinstance(include_query, bool):
            raise ValueError(f"include_query must be True or False, got {include_query!r}.")
        self.include_query = include_query

    def compute(self, labels, embeddings):
        """The loss of the batch: one minus the sigmoid-smoothed AP, averaged over queries."""
        m = self.pair_matrices(distances.l2_normalize(embeddings), labels, "cosine")
        batch = tf.shape(labels)[0]
        self_mask = tf.eye(batch, dtype=tf.bool)
        positives = tf.logical_or(m.positive_mask, self_mask) if self.include_query else m.positive_mask
        # Similarity of each retrieved item to the query: pooled for negatives.
        scores = tf.where(m.negative_mask, m.negative, m.positive)
        # sig[q, i, j] = G(s_qj − s_qi; τ) for every (query q, ranked item i, other item j): the one B³ tensor.
        sig = tf.sigmoid((scores[:, None, :] - scores[:, :, None]) / self.temperature)
        dtype = embeddings.dtype
        positive_j = tf.cast(positives, dtype)  # (q, j)
        retrieval_j = tf.cast(tf.logical_not(self_mask), dtype) if not self.include_query else tf.ones_like(positive_j)
        # Σ_{j≠i} sig[q, i, j] w[q, j] = Σ_j sig[q, i, j] w[q, j] − G(0) w[q, i], with G(0) = ½.
        positive_rank = 1.0 + tf.linalg.matvec(sig, positive_j) - 0.5 * positive_j
        overall_rank = 1.0 + tf.linalg.matvec(sig, retrieval_j) - 0.5 * retrieval_j
        count = tf.reduce_sum(tf.cast(positives, dtype), axis=1)
        ratio = tf.where(positives, positive_rank / overall_rank, tf.zeros_like(positive_rank))
        average_precision = tf.math.divide_no_nan(tf.reduce_sum(ratio, axis=1), count)
        return masked_mean(1.0 - average_precision, count > 0)
