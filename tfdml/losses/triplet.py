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
AVERAGES = ("triplets", "active_triplets", "positive_pairs", "sum")


@register("triplet")
class TripletLoss(MetricLoss):
    """Triplet loss (Schroff et al. 2015; Hermans et al. 2017; Xuan et al. 2020).

    Per mined triplet (a, p, n) with distances d_ap, d_an:

    - `form="hinge"`: ℓ = [d_ap − d_an + margin]_+
    - `form="softplus"`: ℓ = log(1 + exp(d_ap − d_an)) (Vo & Hays use it over all
      triplets with squared distances on features scaled by 4: `mining="all",
      distance="squared_euclidean", embedding_scale=4`). Vo & Hays print
      exp(d(a, n) − d(a, p)), a sign typo: minimising that pushes positives
      apart and pulls negatives together; their code and this form use
      d_ap − d_an.
    - `form="nca"`: ℓ = −log softmax([s_ap, s_an] / temperature)[0]
      = log(1 + exp((s_an − s_ap) / temperature)) on cosine similarities s
      (Xuan et al., "Improved embeddings with easy positive triplet mining",
      temperature 0.1). Mining still uses `distance`.

    Reduction (`average_over`): the sum of ℓ over the valid mined triplets is
    divided by

    - "triplets": their number — the mean over anchors having a positive and a
      negative for `mining="hard"` (batch-hard, HPHN), over valid triplets for
      the other miners (one per anchor, or one per anchor–positive pair for
      "semihard" and "distance"; see `tfdml.losses.mining`);
    - "active_triplets": the number of those with ℓ > 0 (Hermans et al.'s
      "BA≠0", pytorch-metric-learning's convention);
    - "positive_pairs": |P|, the number of ordered positive pairs (a, p),
      a ≠ p, of the batch — the normalisation of Ko & Gu (CVPR 2020) eqs. 1
      and 11: with `mining="all"`,
      loss = 1/|P| Σ_{(a,p)∈P} Σ_{n: y_n ≠ y_a} ℓ_apn;
    - "sum": 1, the plain sum over the valid mined triplets. With
      `mining="hard"` this is the sum of the per-anchor batch-hard (HPHN)
      losses that the official EE code back-propagates (`loss.backward()` on
      the per-anchor vector); with coupled weight decay its update differs
      from the mean's (Adam is invariant to the loss scale, the decay is not).

    Default (None): "active_triplets" for `mining="all"` with the hinge form,
    "triplets" otherwise (for the always-positive softplus/nca forms both are
    the same). A batch without any valid triplet gives 0 with a zero gradient.

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
        average_over: None, "triplets", "active_triplets", "positive_pairs" or
            "sum" (see Reduction).

    Example (unit circle: every anchor's farthest positive and nearest negative
    are both √2 away, so each hinge is 0.5):

    >>> loss = tfdml.losses.TripletLoss(margin=0.5, mining="hard")
    >>> labels = [0, 0, 1, 1]
    >>> embeddings = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]
    >>> round(float(loss(labels, embeddings)), 4)
    0.5
    """

    config_args = ("margin", "mining", "form", "distance", "normalize", "temperature", "rho", "embedding_scale",
                   "expansion", "seed", "average_over")
    supports_expansion = True
    default_pooling = "anchor"
    random_sampling = True

    def __init__(self, margin=0.2, mining="hard", form="hinge", distance="euclidean", normalize=True,
                 temperature=0.1, rho=0.0, embedding_scale=1.0, expansion=None, seed=None, average_over=None,
                 name="triplet_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, seed=seed, **kwargs)
        self.margin = check_number(margin, "margin")
        self.rho = check_number(rho, "rho", 0.0, 1.0)
        self.mining = mining_lib.check_mining(mining, rho=self.rho)
        self.form = check_choice(form, "form", FORMS)
        self.distance = distances.check_metric(distance, "distance", TRIPLET_DISTANCES)
        self.normalize = bool(normalize)
        self.temperature = check_number(temperature, "temperature", greater_than=0.0)
        self.embedding_scale = check_number(embedding_scale, "embedding_scale", greater_than=0.0)
        self.average_over = None if average_over is None else check_choice(average_over, "average_over", AVERAGES)

    @property
    def average(self):
        """The `average_over` in use (resolving the default None)."""
        if self.average_over is not None:
            return self.average_over
        return "active_triplets" if self.mining == "all" and self.form == "hinge" else "triplets"

    def _per_triplet(self, d_ap, d_an):
        """ℓ of each triplet; for the "nca" form d_ap, d_an are cosine similarities."""
        if self.form == "hinge":
            return tf.nn.relu(d_ap - d_an + self.margin)
        if self.form == "softplus":
            return tf.nn.softplus(d_ap - d_an)
        return tf.nn.softplus((d_an - d_ap) / self.temperature)

    def compute(self, labels, embeddings):
        """The loss of the batch: the per-triplet loss of the mined triplets, reduced as `average` says."""
        embeddings = normalize_if(embeddings, self.normalize)
        if self.embedding_scale != 1.0:
            embeddings = embeddings * self.embedding_scale
        matrices = self.pair_matrices(embeddings, labels, self.distance, self.normalize)
        similarities = self.pair_matrices(embeddings, labels, "cosine", self.normalize) if self.form == "nca" else None
        mined = mining_lib.mined_distances(matrices, labels, self.mining, margin=self.margin, rho=self.rho,
                                           seed=self._seed_generator, values=similarities)
        per_triplet = self._per_triplet(mined.d_ap, mined.d_an)  # (B, B, B) for "all": inherent, one hinge each
        valid = mined.valid
        if self.average == "sum":
            return tf.reduce_sum(tf.where(valid, per_triplet, tf.zeros_like(per_triplet)))
        if self.average == "positive_pairs":
            total = tf.reduce_sum(tf.where(valid, per_triplet, tf.zeros_like(per_triplet)))
            return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(matrices.positive_mask, total.dtype)))
        if self.average == "active_triplets":
            valid = tf.logical_and(valid, per_triplet > 0)
        return masked_mean(per_triplet, valid)
