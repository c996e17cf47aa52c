"""NT-Xent, the normalised temperature-scaled cross-entropy (Chen et al., SimCLR 2020)."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_choice, check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_logsumexp, masked_mean
from tfdml.losses.registry import register

DENOMINATORS = ("all", "negatives")


@register("ntxent")
class NTXentLoss(MetricLoss):
    """NT-Xent loss (Chen et al., "A Simple Framework for Contrastive Learning of
    Visual Representations", ICML 2020, eq. 1) with class labels.

    On cosine similarities s of L2-normalised embeddings and temperature τ, for
    every ordered positive pair (i, j), i ≠ j, y_i = y_j:

    - `denominator="all"` (default, eq. 1: 1[k ≠ i] over the whole batch):

          ℓ_ij = −log( e^{s_ij/τ} / Σ_{k≠i} e^{s_ik/τ} )

    - `denominator="negatives"` (pytorch-metric-learning's `NTXentLoss`): the
      pair's own positive and the anchor's negatives only,

          ℓ_ij = −log( e^{s_ij/τ} / (e^{s_ij/τ} + Σ_{k: y_k≠y_i} e^{s_ik/τ}) )

    loss = mean of ℓ_ij over the ordered positive pairs (0 if none), the
    paper's 1/2N Σ_k [ℓ(2k−1, 2k) + ℓ(2k, 2k−1)]. With two views per class (the
    SimCLR batch) both forms are eq. 1; they differ when a class has more than
    two samples (other positives in the denominator or not).

    The default τ = 0.1 is the official SimCLR code's (google-research/simclr,
    `run.py`); pytorch-metric-learning defaults to 0.07.

    Embedding Expansion: every negative similarity s_ik is the EE-pooled one
    (maximum over the pools; default pooling "class").

    Args:
        temperature: τ.
        denominator: "all" (eq. 1) or "negatives" (PML).
        expansion: `tfdml.EmbeddingExpansion` or None.

    Example (the positive pair has similarity 1, the negative 0; τ = 1):

    >>> loss = tfdml.losses.NTXentLoss(temperature=1.0)
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> round(float(value), 4)  # −log(e / (e + 1)) = log(1 + e^{−1})
    0.3133
    """

    config_args = ("temperature", "denominator", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, temperature=0.1, denominator="all", expansion=None, name="ntxent_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.temperature = check_number(temperature, "temperature", greater_than=0.0)
        self.denominator = check_choice(denominator, "denominator", DENOMINATORS)

    def compute(self, labels, embeddings):
        """The loss of the batch: the temperature-scaled cross-entropy of each positive pair, averaged over
        positive pairs."""
        m = self.pair_matrices(distances.l2_normalize(embeddings), labels, "cosine")
        positive = m.positive / self.temperature
        negative = m.negative / self.temperature
        if self.denominator == "all":
            logits = tf.where(m.positive_mask, positive, negative)
            denominator = masked_logsumexp(logits, tf.logical_or(m.positive_mask, m.negative_mask), axis=1)
            per_pair = denominator[:, None] - positive
        else:  # log(e^p + Σ e^n) − p = softplus(logsumexp(n) − p); no negative: softplus(−1e4) = 0
            per_pair = tf.nn.softplus(masked_logsumexp(negative, m.negative_mask, axis=1)[:, None] - positive)
        return masked_mean(per_pair, m.positive_mask)
