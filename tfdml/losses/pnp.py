"""PNP loss (Li et al., AAAI 2022): only negatives ranked before positives are penalised."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_choice, check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_mean
from tfdml.losses.registry import register

VARIANTS = ("O", "Iu", "Ib", "Ds", "Dq")


@register("pnp")
class PNPLoss(MetricLoss):
    r"""PNP loss, "Penalizing Negative instances before Positive ones" (Li et
    al., "Rethinking the Optimization of Average Precision: Only Penalizing
    Negative Instances before Positive Ones is Enough", AAAI 2022, Sec. 3).

    On cosine similarities s of L2-normalised embeddings, every sample q of
    the batch is a query. For a positive i of q (same class) the smoothed
    number of negatives ranked before it is

        R_qi = Σ_{k: y_k ≠ y_q} σ((s_qk − s_qi) / τ)     (σ the logistic sigmoid)

    and each variant applies its function f to R_qi (its derivative decides
    how hard positives are weighted):

    - "O" (PNP-O): f(R) = R;
    - "Iu" (PNP-I_u, increasing derivative): f(R) = (1 + R) log(1 + R);
    - "Ib" (PNP-I_b, increasing, bounded): f(R) = (bR − log(1 + bR)) / b²;
    - "Ds" (PNP-D_s, decreasing): f(R) = log(1 + R);
    - "Dq" (PNP-D_q, decreasing): f(R) = 1 − 1/(1 + R)^α.

    ℓ_q = 1/|P_q| Σ_{i∈P_q} f(R_qi) and loss = mean of ℓ_q over the queries
    with another sample of their class (0 if none, e.g. a batch of
    singletons). With `query_as_positive=True` (default) P_q holds every sample
    of q's class *including q itself* (whose R_qq counts the negatives scoring
    above q's self-similarity); with False, P_q excludes q.

    Defaults: the variant the paper recommends, PNP-D_q, with α = 4 and
    τ = 0.01 (the authors' reported best SOP run), b = 2. The paper text could
    not be checked offline: the form — the query counted among its own
    positives, the per-query mean — follows the authors' code and
    pytorch-metric-learning's `PNPLoss` (the same equations; its defaults are
    `variant="O"`, α = 1). The sigmoid is not clamped (the authors' code
    clamps its exponent to ±50, a difference below 2e-22 per term). Cost:
    O(B³) time and memory (every query × positive × negative).

    Embedding Expansion: every negative similarity s_qk is the EE-pooled one
    (maximum over the pools; default pooling "class").

    Args:
        variant: "O", "Iu", "Ib", "Ds" or "Dq".
        temperature: τ, the sigmoid's temperature.
        alpha: α of PNP-D_q.
        b: b of PNP-I_b.
        query_as_positive: count the query among its own positives.
        expansion: `tfdml.EmbeddingExpansion` or None.

    Returns:
        The scalar loss when called as `loss(labels, embeddings)`.

    Example (orthonormal points, every similarity 0 except s_qq = 1; PNP-O,
    τ = 1: the two queries of class 0 have R_qq = σ(−1) (their negative against
    the self-similarity 1) and R_qi = σ(0) = ½ for the other positive, so
    ℓ = (σ(−1) + ½)/2; the lone sample of class 1 is no query):

    >>> loss = tfdml.losses.PNPLoss(variant="O", temperature=1.0)
    >>> value = loss([0, 0, 1], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> round(float(value), 4)  # (σ(−1) + ½) / 2
    0.3845
    """

    config_args = ("variant", "temperature", "alpha", "b", "query_as_positive", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, variant="Dq", temperature=0.01, alpha=4.0, b=2.0, query_as_positive=True, expansion=None,
                 name="pnp_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.variant = check_choice(variant, "variant", VARIANTS)
        self.temperature = check_number(temperature, "temperature", greater_than=0.0)
        self.alpha = check_number(alpha, "alpha", greater_than=0.0)
        self.b = check_number(b, "b", greater_than=0.0)
        self.query_as_positive = bool(query_as_positive)

    def compute(self, labels, embeddings):
        """The loss of the batch: the transformed (`variant`) smoothed count of negatives ranked before
        each positive, averaged over a query's positives, then over queries."""
        m = self.pair_matrices(distances.l2_normalize(embeddings), labels, "cosine")
        positives = m.positive_mask
        is_query = tf.reduce_any(positives, axis=1)
        if self.query_as_positive:
            positives = tf.logical_or(positives, tf.logical_and(tf.cast(tf.eye(tf.shape(labels)[0]), tf.bool),
                                                                is_query[:, None]))
        # (query q, positive i, negative k): σ((s_qk − s_qi)/τ) where k is a negative of q.
        before = tf.sigmoid((m.negative[:, None, :] - m.positive[:, :, None]) / self.temperature)
        before = tf.where(m.negative_mask[:, None, :], before, tf.zeros_like(before))
        rank = tf.reduce_sum(before, axis=2)  # R_qi, (B, B)
        per_pair = self._transform(rank)
        count = tf.reduce_sum(tf.cast(positives, per_pair.dtype), axis=1)
        per_query = tf.math.divide_no_nan(
            tf.reduce_sum(tf.where(positives, per_pair, tf.zeros_like(per_pair)), axis=1), count)
        return masked_mean(per_query, is_query)

    def _transform(self, rank):
        if self.variant == "O":
            return rank
        if self.variant == "Iu":
            return (1.0 + rank) * tf.math.log1p(rank)
        if self.variant == "Ib":
            return (self.b * rank - tf.math.log1p(self.b * rank)) / self.b ** 2
        if self.variant == "Ds":
            return tf.math.log1p(rank)
        return 1.0 - tf.pow(1.0 + rank, -self.alpha)
