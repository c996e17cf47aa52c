"""Quadruplet loss (Chen et al. 2017) with distance-weighted first negatives."""
import tensorflow as tf

from tfdml.checks import check_number
from tfdml.losses import mining as mining_lib
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_mean, normalize_if, pair_values
from tfdml.losses.registry import register


@register("quadruplet")
class QuadrupletLoss(MetricLoss):
    """Quadruplet loss (Chen et al., "Beyond triplet loss: a deep quadruplet
    network for person re-identification", CVPR 2017; Roth et al., ICML 2020,
    eq. 14 and their code).

    Euclidean distances d on L2-normalised embeddings. Triplets (i, j, k) — j a
    positive of anchor i, k a negative — come from distance-weighted sampling
    (Wu et al.; `tfdml.losses.mining`, one negative per anchor–positive pair).
    For each, a fourth sample l is drawn uniformly among the samples whose class
    is neither y_i nor y_k (`tfdml.losses.mining.sample_other_class`). Per
    quadruplet:

        ℓ1 = [d_ij − d_ik + γ1]_+          (γ1 = margin)
        ℓ2 = [d_ij − d_lk + γ2]_+          (γ2 = second_margin)

    ℓ2 is Chen et al.'s second term (and Roth et al.'s code): the positive pair
    must be closer than a negative pair that does not share the anchor. (The
    form [d_ik − d_lk + γ2]_+ would pull anchor and negative together, so it is
    not used.)

    loss = mean over valid triplets of ℓ1 + mean over valid quadruplets of ℓ2
    (Roth's code: mean(ℓ1) + mean(ℓ2)). A quadruplet is valid when its triplet
    is and an l exists (the batch has a third class); with ≥ 3 classes both
    sets coincide. No valid triplet gives 0 with a zero gradient.

    ρ-regularisation: with probability `rho` per triplet, (i, j, k) becomes
    (i, i, k') with k' a random other sample of i's class (d_ii = 0, d_ik' on
    original points); l is then drawn among classes ≠ y_i.

    Embedding Expansion: every negative-pair distance (d_ik in sampling and ℓ1,
    d_lk in ℓ2) is EE-pooled (minimum; default pooling "anchor", as for the
    triplet loss); positives are original points.

    Args:
        margin: γ1, margin of the triplet term ℓ1.
        second_margin: γ2, margin of the second term ℓ2.
        rho: ρ-regularisation probability in [0, 1].
        normalize: L2-normalise embeddings first (default True, as Roth et al.).
        expansion: `tfdml.EmbeddingExpansion` or None.
        seed: int seed of the sampling.

    Example (a positive pair at distance √2 and one sample of each of two other
    classes, all at distance √2 from each other: ℓ1 = γ1 and ℓ2 = γ2 for every
    quadruplet):

    >>> loss = tfdml.losses.QuadrupletLoss(margin=1.0, second_margin=0.5, seed=0)
    >>> embeddings = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0],
    ...               [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    >>> round(float(loss([0, 0, 1, 2], embeddings)), 4)
    1.5
    """

    config_args = ("margin", "second_margin", "rho", "normalize", "expansion", "seed")
    supports_expansion = True
    default_pooling = "anchor"
    random_sampling = True

    def __init__(self, margin=1.0, second_margin=0.5, rho=0.0, normalize=True, expansion=None, seed=None,
                 name="quadruplet_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, seed=seed, **kwargs)
        self.margin = check_number(margin, "margin")
        self.second_margin = check_number(second_margin, "second_margin")
        self.rho = check_number(rho, "rho", 0.0, 1.0)
        self.normalize = bool(normalize)

    def compute(self, labels, embeddings):
        """The loss of the batch: the mined triplets' hinge plus the second hinge, which compares d_ap
        with the distance of the negative to a fourth sample of yet another class."""
        matrices = self.pair_matrices(normalize_if(embeddings, self.normalize), labels, "euclidean", self.normalize)
        mined = mining_lib.mined_distances(matrices, labels, "distance", margin=self.margin, rho=self.rho,
                                           seed=self._seed_generator)
        anchor, negative = mined.triplets.anchor, mined.triplets.negative
        fourth, has_fourth = mining_lib.sample_other_class(labels, anchor, negative, self._seed_generator)
        d_lk = pair_values(matrices.negative, fourth, negative)
        first = tf.nn.relu(mined.d_ap - mined.d_an + self.margin)
        second = tf.nn.relu(mined.d_ap - d_lk + self.second_margin)
        return masked_mean(first, mined.valid) + masked_mean(second, tf.logical_and(mined.valid, has_fourth))
