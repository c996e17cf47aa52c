"""Signal-to-noise-ratio triplet loss (Yuan et al., CVPR 2019)."""
import tensorflow as tf

from tfdml import distances
from tfdml.losses import mining as mining_lib
from tfdml.losses.base import (
    MetricLoss,
    check_number,
    deserialize_expansion,
    make_seed_generator,
    masked_mean,
    pair_masks,
    pair_matrices,
    serialize_expansion,
    validate_inputs,
)
from tfdml.losses.registry import register

# Variances (times D) below this count as zero signal; keeps d_snr finite.
_VARIANCE_FLOOR = 1e-12


def snr_distances(points):
    """Pairwise SNR distances d_snr(p, q) = Var(x_q − x_p) / Var(x_p).

    Variances are over the embedding dimensions. With centred vectors
    c = x − mean(x), Var(x_q − x_p) / Var(x_p) = ‖c_q − c_p‖² / ‖c_p‖², so the
    matrix follows from the Gram matrix of the centred points (O(P²) memory).
    The metric is not symmetric: rows are the anchors p (signal), columns q.

    Args:
        points: (P, D) embeddings.

    Returns:
        (P, P) matrix, zero diagonal; anchors with zero variance use a tiny
        floor instead (finite values and gradients).
    """
    centred = points - tf.reduce_mean(points, axis=1, keepdims=True)
    sq_norms = tf.reduce_sum(tf.square(centred), axis=1)
    gram = tf.matmul(centred, centred, transpose_b=True)
    noise = tf.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram, 0.0)
    noise = tf.linalg.set_diag(noise, tf.zeros_like(sq_norms))
    return noise / tf.maximum(sq_norms, _VARIANCE_FLOOR)[:, None]


@register("snr")
class SNRLoss(MetricLoss):
    """Signal-to-noise-ratio triplet loss (Yuan et al., "Signal-to-noise ratio: a
    robust distance metric for deep metric learning", CVPR 2019; Roth et al.,
    ICML 2020 and their code).

    On L2-normalised embeddings x (Roth et al.'s protocol), with the SNR
    distance d_snr(a, b) = Var(x_b − x_a) / Var(x_a) (variances over the
    embedding dimensions; see `snr_distances`), per mined triplet (a, p, n):

        ℓ_apn = [d_snr(a, p) − d_snr(a, n) + margin]_+

    loss = mean of ℓ over valid triplets with ℓ > 0 (0 if none; Roth's code
    divides the sum by the number of non-zero terms)
           + reg · mean_i |Σ_m x_im|

    The regulariser pushes each embedding towards zero mean over its dimensions
    (the paper's λ (1/N) Σ_i |Σ_m h_im|; Roth's code applies it to the sampled
    anchors and *disables* it for distance-weighted sampling — pass `reg=0` to
    reproduce that; here it is applied as configured, over all samples).

    Triplets come from any `TripletLoss` miner (`tfdml.losses.mining`; default
    "distance", one negative per anchor–positive pair), which — as in Roth's
    code — mine on Euclidean distances of the normalised embeddings
    (distance-weighted sampling assumes them). `mining="all"` uses every valid
    triplet (O(B³), inherent).

    ρ-regularisation: with probability `rho` per triplet, (a, p, n) becomes
    (a, a, j), j a random other sample of a's class.

    Embedding Expansion: synthetic points are built explicitly
    (`EmbeddingExpansion.expanded_points`), the SNR distance is computed among all
    points, and each anchor–negative distance d_snr(a, n) is the minimum over the
    pools (`pool`, default pooling "anchor": anchor side over G(a), negative side
    over G(n)); the Euclidean distances used for mining are pooled the same way.

    Args:
        margin: hinge margin.
        reg: weight of the zero-mean regulariser.
        mining: a `tfdml.losses.mining.MININGS` name.
        rho: ρ-regularisation probability in [0, 1].
        expansion: `tfdml.EmbeddingExpansion` or None.
        seed: int seed of the random miners / ρ.
    """

    default_pooling = "anchor"

    def __init__(self, margin=0.2, reg=0.005, mining="distance", rho=0.0, expansion=None, seed=None,
                 name="snr_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_number(margin, "margin")
        self.reg = check_number(reg, "reg", 0.0)
        self.mining = mining_lib.check_mining(mining)
        self.rho = check_number(rho, "rho", 0.0, 1.0)
        if self.mining == "all" and self.rho > 0:
            raise ValueError("rho > 0 needs a miner that picks triplets; mining='all' does not.")
        self.expansion = deserialize_expansion(expansion)
        self.seed = seed
        self._seed_generator = make_seed_generator(seed)

    @property
    def _pooling(self):
        return (self.expansion.pooling if self.expansion is not None else None) or self.default_pooling

    def _snr_matrices(self, unit, labels):
        """(positive (B, B) d_snr among originals, negative (B, B) EE-pooled)."""
        if self.expansion is None or self.expansion.n_points == 0:
            full = snr_distances(unit)
            return full, full
        batch = tf.shape(labels)[0]
        points, structure = self.expansion.expanded_points(unit, labels)
        full = snr_distances(points)
        pooled = self.expansion.pool(full, labels, structure, False, self._pooling)
        return full[:batch, :batch], pooled

    def _mine(self, labels, unit):
        euclid = pair_matrices(unit, labels, "euclidean", self.expansion, self.default_pooling)
        triplets = mining_lib.mine_triplets(
            tf.stop_gradient(euclid.positive), tf.stop_gradient(euclid.negative), labels, self.mining,
            margin=self.margin, seed=self._seed_generator, embedding_dim=unit.shape[-1])
        return mining_lib.apply_rho(triplets, labels, self.rho, self._seed_generator)

    def sample_triplets(self, labels, embeddings):
        """The triplets a call `loss(labels, embeddings)` would use (advances the seed).

        Returns:
            (`MinedTriplets`, swapped bool) as from `tfdml.losses.mining`.
        """
        if self.mining == "all":
            raise ValueError("mining='all' does not sample triplets.")
        labels, embeddings = validate_inputs(labels, embeddings)
        unit = distances.l2_normalize(tf.cast(embeddings, self.compute_dtype))
        return self._mine(labels, unit)

    def compute(self, labels, embeddings):
        unit = distances.l2_normalize(embeddings)
        snr_pos, snr_neg = self._snr_matrices(unit, labels)
        if self.mining == "all":
            pos_mask, neg_mask = pair_masks(labels)
            per = tf.nn.relu(snr_pos[:, :, None] - snr_neg[:, None, :] + self.margin)
            valid = tf.logical_and(pos_mask[:, :, None], neg_mask[:, None, :])
        else:
            triplets, swapped = self._mine(labels, unit)
            ap = tf.stack([triplets.anchor, triplets.positive], axis=1)
            an = tf.stack([triplets.anchor, triplets.negative], axis=1)
            d_ap = tf.gather_nd(snr_pos, ap)
            d_an = tf.where(swapped, tf.gather_nd(snr_pos, an), tf.gather_nd(snr_neg, an))
            per = tf.nn.relu(d_ap - d_an + self.margin)
            valid = triplets.valid
        loss = masked_mean(per, tf.logical_and(valid, per > 0))
        if self.reg > 0:
            loss += self.reg * tf.reduce_mean(tf.abs(tf.reduce_sum(unit, axis=1)))
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin, reg=self.reg, mining=self.mining, rho=self.rho,
                      expansion=serialize_expansion(self.expansion),
                      seed=self.seed if not hasattr(self.seed, "get_config") else None)
        return config
