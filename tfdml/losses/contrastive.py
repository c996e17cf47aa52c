"""Contrastive loss (Hadsell, Chopra & LeCun 2006) with ρ-regularisation and EE."""
import keras
import tensorflow as tf

from tfdml.checks import check_number
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_mean, normalize_if
from tfdml.losses.registry import register


@register("contrastive")
class ContrastiveLoss(MetricLoss):
    """Contrastive loss (Hadsell et al., CVPR 2006).

    With Euclidean distances d over all ordered pairs i ≠ j of the batch:

        loss = mean_{positive (i,j)} h([d_ij − pos_margin]_+)
             + mean_{negative (i,k) with non-zero term} h([neg_margin − d_ik]_+)

    h(t) = t (default) or t² when `squared=True` (Hadsell's original form). Each
    mean is 0 when it has no pair.

    ρ-regularisation (Roth et al. 2020): every positive pair is, with probability
    `rho`, moved to the negative term (pushed beyond `neg_margin`, with its
    original distance).

    Embedding Expansion: every negative distance is the pooled one (minimum over
    the pool; default pooling "class").

    Args:
        pos_margin: margin of positive pairs (distances below it cost nothing).
        neg_margin: margin of negative pairs (distances above it cost nothing).
        squared: square both hinge terms.
        rho: ρ-regularisation probability.
        normalize: L2-normalise embeddings first (default True).
        expansion: `tfdml.EmbeddingExpansion` or None.
        seed: seed of the ρ draws.

    Example (the positive pair is √2 apart; of the negative pairs only the two
    √2 apart are inside `neg_margin` = 1.5):

    >>> loss = tfdml.losses.ContrastiveLoss(neg_margin=1.5)
    >>> value = loss([7, 7, 3], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> round(float(value), 4)  # √2 + (1.5 − √2)
    1.5
    """

    config_args = ("pos_margin", "neg_margin", "squared", "rho", "normalize", "expansion", "seed")
    supports_expansion = True
    default_pooling = "class"
    random_sampling = True

    def __init__(self, pos_margin=0.0, neg_margin=1.0, squared=False, rho=0.0, normalize=True,
                 expansion=None, seed=None, name="contrastive_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, seed=seed, **kwargs)
        self.pos_margin = check_number(pos_margin, "pos_margin")
        self.neg_margin = check_number(neg_margin, "neg_margin")
        self.squared = bool(squared)
        self.rho = check_number(rho, "rho", 0.0, 1.0)
        self.normalize = bool(normalize)

    def compute(self, labels, embeddings):
        m = self.pair_matrices(normalize_if(embeddings, self.normalize), labels, "euclidean", self.normalize)
        positive_mask, negative_mask = m.positive_mask, m.negative_mask
        negative_d = m.negative
        if self.rho > 0:
            draw = keras.random.uniform(tf.shape(positive_mask), seed=self._seed_generator, dtype="float32")
            flipped = tf.logical_and(positive_mask, draw < self.rho)
            positive_mask = tf.logical_and(positive_mask, tf.logical_not(flipped))
            negative_mask = tf.logical_or(negative_mask, flipped)
            negative_d = tf.where(flipped, m.positive, m.negative)
        pos_term = tf.nn.relu(m.positive - self.pos_margin)
        neg_term = tf.nn.relu(self.neg_margin - negative_d)
        if self.squared:
            pos_term, neg_term = tf.square(pos_term), tf.square(neg_term)
        active_neg = tf.logical_and(negative_mask, neg_term > 0)
        return masked_mean(pos_term, positive_mask) + masked_mean(neg_term, active_neg)
