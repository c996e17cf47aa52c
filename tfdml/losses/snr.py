"""Signal-to-noise-ratio triplet loss (Yuan et al., CVPR 2019)."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses import mining as mining_lib
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_mean, normalize_if
from tfdml.losses.pairs import PairMatrices
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
    noise = distances.zero_diagonal(noise)
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
           + embedding_reg · mean_i |Σ_m x_im|

    The regulariser pushes each embedding towards zero mean over its dimensions
    (the paper's λ (1/N) Σ_i |Σ_m h_im|; Roth's code applies it to the sampled
    anchors and *disables* it for distance-weighted sampling — pass
    `embedding_reg=0` to reproduce that; here it is applied as configured, over
    all samples).

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
        embedding_reg: weight of the zero-mean regulariser.
        mining: a `tfdml.losses.mining.MININGS` name.
        rho: ρ-regularisation probability in [0, 1].
        normalize: L2-normalise embeddings first (default True, Roth et al.).
        expansion: `tfdml.EmbeddingExpansion` or None.
        seed: int seed of the random miners / ρ.

    Example (anchor and positive coincide: d_snr = 0; for the negative,
    Var((0, 1) − (1, 0)) / Var((1, 0)) = 1 / 0.25 = 4, so ℓ = [0 − 4 + 5]_+ for
    both anchors):

    >>> loss = tfdml.losses.SNRLoss(margin=5.0, embedding_reg=0.0, mining="all")
    >>> round(float(loss([0, 0, 1], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])), 4)
    1.0
    """

    config_args = ("margin", "embedding_reg", "mining", "rho", "normalize", "expansion", "seed")
    supports_expansion = True
    default_pooling = "anchor"
    random_sampling = True

    def __init__(self, margin=0.2, embedding_reg=0.005, mining="distance", rho=0.0, normalize=True, expansion=None,
                 seed=None, name="snr_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, seed=seed, **kwargs)
        self.margin = check_number(margin, "margin")
        self.embedding_reg = check_number(embedding_reg, "embedding_reg", 0.0)
        self.rho = check_number(rho, "rho", 0.0, 1.0)
        self.mining = mining_lib.check_mining(mining, rho=self.rho)
        self.normalize = bool(normalize)

    def snr_matrices(self, embeddings, labels, positive_mask, negative_mask):
        """`PairMatrices` of d_snr: among originals, and EE-pooled for negative pairs."""
        dim = embeddings.shape[-1]
        if self.expansion is None or self.expansion.n_points == 0:
            full = snr_distances(embeddings)
            return PairMatrices(full, full, positive_mask, negative_mask, dim)
        batch = tf.shape(labels)[0]
        points, structure = self.expansion.expanded_points(embeddings, labels)
        full = snr_distances(points)
        pooled = self.expansion.pool(full, labels, structure, False, self.pooling)
        return PairMatrices(full[:batch, :batch], pooled, positive_mask, negative_mask, dim)

    def compute(self, labels, embeddings):
        """The SNR triplet loss over the mined triplets (see the class docstring)."""
        embeddings = normalize_if(embeddings, self.normalize)
        if self.mining == "all":  # nothing to mine
            snr = self.snr_matrices(embeddings, labels, *self.mined_pair_masks(labels))
            matrices = snr
        else:  # mining uses Euclidean distances, EE-pooled the same way
            matrices = self.pair_matrices(embeddings, labels, "euclidean", self.normalize)
            snr = self.snr_matrices(embeddings, labels, matrices.positive_mask, matrices.negative_mask)
        mined = mining_lib.mined_distances(matrices, labels, self.mining, margin=self.margin, rho=self.rho,
                                           seed=self._seed_generator, values=snr)
        per_triplet = tf.nn.relu(mined.d_ap - mined.d_an + self.margin)
        loss = masked_mean(per_triplet, tf.logical_and(mined.valid, per_triplet > 0))
        if self.embedding_reg > 0:
            loss += self.embedding_reg * tf.reduce_mean(tf.abs(tf.reduce_sum(embeddings, axis=1)))
        return loss
