"""Triplet loss with every miner, three forms, ρ-regularisation and EE."""
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_choice, check_number
from tfdml.losses import mining as mining_lib
from tfdml.losses.base import MetricLoss
from tfdml.losses.ops import masked_mean, normalize_if
from tfdml.losses.registry import register

FORMS = ("hinge", "softplus", "nca")
TRIPLET_DISTANCES = ("euclidean", "squared_euclidean", "cosine_distance")


@register("triplet")
class TripletLoss(MetricLoss):
    """Triplet loss (Schroff et al. 2015; Hermans et al. 2017; Xuan et al. 2020).

    Per mined triplet (a, p, n) with distances d_ap, d_an:
    - `form="hinge"`: ℓ = [d_ap − d_an + margin]_+
    - `form="softplus"`: ℓ = log(1 + exp(d_ap − d_an)) (Vo & Hays use it over all
      triplets with squared distances on features scaled by 4: `mining="all",
      distance="squared_euclidean", embedding_scale=4`)
    - `form="nca"`: ℓ = −log softmax([s_ap, s_an] / temperature)[0]
      = log(1 + exp((s_an − s_ap) / temperature)) on cosine similarities s
      (Xuan et al., "Improved embeddings with easy positive triplet mining",
      temperature 0.1). Mining still uses `distance`.

    Reduction: `mining="hard"` — mean over anchors having a positive and a
    negative (batch-hard, HPHN); `mining="all"` — mean over all valid triplets with
    ℓ > 0 (all valid triplets for the always-positive softplus/nca forms); every
    other miner — mean over its valid triplets (one per anchor, or one per
    anchor–positive pair for "semihard" and "distance"; see `tfdml.losses.mining`).
    A batch without any valid triplet gives 0 with a zero gradient.

    Embedding Expansion: every anchor–negative distance (in mining and in ℓ) is
    the EE-pooled one; positives and anchors are original points. Default pooling
    is "anchor", which for batch-hard mining is exactly the official EE code:
    hardest positive among original points, hardest negative over the anchor and
    its synthetic points versus all points of other classes.

    ρ-regularisation (Roth et al. 2020 §5): with probability `rho` per triplet,
    (i, p, n) is replaced by (i, i, j) with j a random other sample of i's class.

    Args:
        margin: hinge margin m.
        mining: one of `tfdml.losses.mining.MININGS`.
        form: "hinge", "softplus" or "nca".
        distance: "euclidean", "squared_euclidean" or "cosine_distance".
        normalize: L2-normalise embeddings first.
        temperature: temperature of the "nca" form.
        rho: ρ-regularisation probability in [0, 1].
        embedding_scale: embeddings are multiplied by it (after normalisation).
        expansion: `tfdml.EmbeddingExpansion` or None.
        seed: int seed of the random miners / ρ.

    Example (unit circle: every anchor's farthest positive and nearest negative
    are both √2 away, so each hinge is 0.5):

    >>> loss = tfdml.losses.TripletLoss(margin=0.5, mining="hard")
    >>> labels = [0, 0, 1, 1]
    >>> embeddings = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]
    >>> round(float(loss(labels, embeddings)), 4)
    0.5
    """

    config_args = ("margin", "mining", "form", "distance", "normalize", "temperature", "rho", "embedding_scale",
                   "expansion", "seed")
    supports_expansion = True
    default_pooling = "anchor"
    random_sampling = True

    def __init__(self, margin=0.2, mining="hard", form="hinge", distance="euclidean", normalize=True,
                 temperature=0.1, rho=0.0, embedding_scale=1.0, expansion=None, seed=None, name="triplet_loss",
                 **kwargs):
        super().__init__(name=name, expansion=expansion, seed=seed, **kwargs)
        self.margin = check_number(margin, "margin")
        self.rho = check_number(rho, "rho", 0.0, 1.0)
        self.mining = mining_lib.check_mining(mining, rho=self.rho)
        self.form = check_choice(form, "form", FORMS)
        self.distance = distances.check_metric(distance, "distance", TRIPLET_DISTANCES)
        self.normalize = bool(normalize)
        self.temperature = check_number(temperature, "temperature", greater_than=0.0)
        self.embedding_scale = check_number(embedding_scale, "embedding_scale", greater_than=0.0)

    def _per_triplet(self, d_ap, d_an):
        """ℓ of each triplet; for the "nca" form d_ap, d_an are cosine similarities."""
        if self.form == "hinge":
            return tf.nn.relu(d_ap - d_an + self.margin)
        if self.form == "softplus":
            return tf.nn.softplus(d_ap - d_an)
        return tf.nn.softplus((d_an - d_ap) / self.temperature)

    def compute(self, labels, embeddings):
        embeddings = normalize_if(embeddings, self.normalize)
        if self.embedding_scale != 1.0:
            embeddings = embeddings * self.embedding_scale
        matrices = self.pair_matrices(embeddings, labels, self.distance)
        similarities = self.pair_matrices(embeddings, labels, "cosine") if self.form == "nca" else None
        mined = mining_lib.mined_distances(matrices, labels, self.mining, margin=self.margin, rho=self.rho,
                                           seed=self._seed_generator, values=similarities)
        per_triplet = self._per_triplet(mined.d_ap, mined.d_an)
        valid = mined.valid
        if self.mining == "all" and self.form == "hinge":
            valid = tf.logical_and(valid, per_triplet > 0)  # O(B³) is inherent: each triplet has its own hinge
        return masked_mean(per_triplet, valid)
