"""Contrastive loss (Hadsell, Chopra & LeCun 2006) with ρ-regularisation and EE."""
import keras
import tensorflow as tf

from tfdml.checks import check_choice, check_number
from tfdml.losses import mining as mining_lib
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_mean, normalize_if
from tfdml.losses.registry import register

#: Which pairs enter the loss: "all" (every pair of the batch) or the pairs of
#: triplets drawn by one of these miners (`tfdml.losses.mining`).
CONTRASTIVE_MININGS = ("all",) + mining_lib.PER_ANCHOR + mining_lib.PER_PAIR + mining_lib.PARAMETRIC
#: "mean": mean over positive pairs + mean over the negative pairs with a
#: non-zero term; "batch": the sum over all pairs' terms divided by the batch
#: size b (Roth et al. 2020, appendix A.1).
CONTRASTIVE_REDUCTIONS = ("mean", "batch")
#: "euclidean": hinges on Euclidean distances (Hadsell et al.); "cosine": hinges on
#: cosine similarities (the form of XBM, Wang et al. 2020).
CONTRASTIVE_METRICS = ("euclidean", "cosine")


@register("contrastive")
class ContrastiveLoss(MetricLoss):
    """Contrastive loss (Hadsell et al., CVPR 2006).

    With Euclidean distances d over all ordered pairs i ≠ j of the batch
    (the default, `mining="all"`, `reduction="mean"`):

        loss = mean_{positive (i,j)} h([d_ij − pos_margin]_+)
             + mean_{negative (i,k) with non-zero term} h([neg_margin − d_ik]_+)

    h(t) = t (default) or t² when `squared=True` (Hadsell's original form). Each
    mean is 0 when it has no pair.

    Roth et al. (ICML 2020, appendix A.1) form, `mining="distance"`,
    `reduction="batch"`: the pairs are those of distance-weighted triplets
    (i, j, k) (Wu et al. 2017; `tfdml.losses.mining`, one negative k drawn per
    anchor–positive pair (i, j)) and the sum is normalised by the batch size b:

        loss = 1/b Σ_{mined (i,j,k)} ( h([d_ij − pos_margin]_+) + h([neg_margin − d_ik]_+) )

    With two samples per class (their SPC-2 batches) there are b such triplets,
    so this is their code's mean over triplets of both terms. Any other miner
    name takes its triplets' pairs; `reduction="mean"` with a miner averages the
    positive terms and the non-zero negative terms of the mined triplets, and
    `reduction="batch"` with `mining="all"` sums every pair's term over b.

    ρ-regularisation (Roth et al. 2020): with `mining="all"`, every positive pair
    is, with probability `rho`, moved to the negative term (pushed beyond
    `neg_margin`, with its original distance); with a miner, each triplet
    (i, j, k) becomes (i, i, k') with k' another sample of i's class
    (`tfdml.losses.mining.apply_rho`).

    `metric="cosine"` (the similarity form of the contrastive loss used by XBM,
    Wang et al. 2020, §5.1 and their code): with cosine similarities s,

        terms h([pos_margin − s_ij]_+) for positive pairs, h([s_ik − neg_margin]_+)
        for negative pairs,

    reduced as above (`mining="all"` only). XBM's setting is `pos_margin=1`,
    `neg_margin=0.5`, `reduction="batch"`: 1/b Σ_i (Σ_P (1 − s_ij) + Σ_N [s_ik − 0.5]_+)
    — their code sums s_ik itself over the negatives with s_ik > 0.5, the same
    gradient (their value is higher by 0.5 per such negative).

    Embedding Expansion: every negative distance is the pooled one (minimum over
    the pool, maximum of similarities; default pooling "class").

    Args:
        pos_margin: margin of positive pairs (distances below it cost nothing).
        neg_margin: margin of negative pairs (distances above it cost nothing).
        squared: square both hinge terms.
        rho: ρ-regularisation probability.
        mining: "all" or a triplet miner (`CONTRASTIVE_MININGS`; a parametric
            miner also as its config dict).
        metric: "euclidean" (default) or "cosine" (similarity form; `mining="all"`).
        reduction: "mean" or "batch" (`CONTRASTIVE_REDUCTIONS`).
        normalize: L2-normalise embeddings first (default True).
        expansion: `tfdml.EmbeddingExpansion` or None.
        seed: seed of the ρ draws and of the miner.

    Example (the positive pair is √2 apart; of the negative pairs only the two
    √2 apart are inside `neg_margin` = 1.5):

    >>> loss = tfdml.losses.ContrastiveLoss(neg_margin=1.5)
    >>> value = loss([7, 7, 3], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> round(float(value), 4)  # √2 + (1.5 − √2)
    1.5
    """

    config_args = ("pos_margin", "neg_margin", "squared", "rho", "mining", "reduction", "normalize", "expansion",
                   "seed", "metric")
    supports_expansion = True
    default_pooling = "class"
    random_sampling = True

    def __init__(self, pos_margin=0.0, neg_margin=1.0, squared=False, rho=0.0, mining="all", reduction="mean",
                 normalize=True, expansion=None, seed=None, metric="euclidean", name="contrastive_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, seed=seed, **kwargs)
        self.pos_margin = check_number(pos_margin, "pos_margin")
        self.neg_margin = check_number(neg_margin, "neg_margin")
        self.squared = bool(squared)
        self.rho = check_number(rho, "rho", 0.0, 1.0)
        # ρ with "all" moves positive pairs (below); with a miner it needs picked triplets
        self.mining = mining_lib.check_mining(mining, CONTRASTIVE_MININGS, 0.0 if mining == "all" else self.rho)
        self.reduction = check_choice(reduction, "reduction", CONTRASTIVE_REDUCTIONS)
        self.normalize = bool(normalize)
        self.metric = check_choice(metric, "metric", CONTRASTIVE_METRICS)
        if self.metric == "cosine" and self.mining != "all":
            raise ValueError(f"mining={self.mining!r} mines triplets on distances; metric='cosine' takes "
                             "mining='all'.")

    def _terms(self, d_pos, d_neg):
        if self.metric == "cosine":  # similarities: positives below pos_margin, negatives above neg_margin cost
            return self._squared(tf.nn.relu(self.pos_margin - d_pos), tf.nn.relu(d_neg - self.neg_margin))
        return self._squared(tf.nn.relu(d_pos - self.pos_margin), tf.nn.relu(self.neg_margin - d_neg))

    def _squared(self, pos_term, neg_term):
        if self.squared:
            pos_term, neg_term = tf.square(pos_term), tf.square(neg_term)
        return pos_term, neg_term

    def _reduce(self, pos_term, positive_mask, neg_term, negative_mask, batch):
        if self.reduction == "batch":
            zero = tf.zeros_like(pos_term)
            total = (tf.reduce_sum(tf.where(positive_mask, pos_term, zero))
                     + tf.reduce_sum(tf.where(negative_mask, neg_term, tf.zeros_like(neg_term))))
            return total / tf.cast(batch, total.dtype)
        active_neg = tf.logical_and(negative_mask, neg_term > 0)
        return masked_mean(pos_term, positive_mask) + masked_mean(neg_term, active_neg)

    def compute(self, labels, embeddings):
        """The contrastive loss of the batch (see the class docstring)."""
        m = self.pair_matrices(normalize_if(embeddings, self.normalize), labels, self.metric, self.normalize)
        batch = tf.shape(labels)[0]
        if self.mining != "all":
            mined = mining_lib.mined_distances(m, labels, self.mining, rho=self.rho, seed=self._seed_generator)
            pos_term, neg_term = self._terms(mined.d_ap, mined.d_an)
            return self._reduce(pos_term, mined.valid, neg_term, mined.valid, batch)
        positive_mask, negative_mask = m.positive_mask, m.negative_mask
        negative_d = m.negative
        if self.rho > 0:
            draw = keras.random.uniform(tf.shape(positive_mask), seed=self._seed_generator, dtype="float32")
            flipped = tf.logical_and(positive_mask, draw < self.rho)
            positive_mask = tf.logical_and(positive_mask, tf.logical_not(flipped))
            negative_mask = tf.logical_or(negative_mask, flipped)
            negative_d = tf.where(flipped, m.positive, m.negative)
        pos_term, neg_term = self._terms(m.positive, negative_d)
        return self._reduce(pos_term, positive_mask, neg_term, negative_mask, batch)
