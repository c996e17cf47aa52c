"""Triplet loss with every miner, three forms, ρ-regularisation and EE."""
import tensorflow as tf

from tfdml import distances
from tfdml.losses import mining as mining_lib
from tfdml.losses.base import (
    MetricLoss,
    check_number,
    deserialize_expansion,
    make_seed_generator,
    masked_mean,
    normalize_if,
    pair_matrices,
    serialize_expansion,
)
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
      distance="squared_euclidean", scale=4`)
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
        scale: embeddings are multiplied by `scale` (after normalisation).
        expansion: `tfdml.EmbeddingExpansion` or None.
        seed: int seed of the random miners / ρ.
    """

    default_pooling = "anchor"

    def __init__(
        self,
        margin=0.2,
        mining="hard",
        form="hinge",
        distance="euclidean",
        normalize=True,
        temperature=0.1,
        rho=0.0,
        scale=1.0,
        expansion=None,
        seed=None,
        name="triplet_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.margin = check_number(margin, "margin")
        self.mining = mining_lib.check_mining(mining)
        if form not in FORMS:
            raise ValueError(f"Unknown form={form!r}; expected one of {list(FORMS)}.")
        self.form = form
        self.distance = distances.check_metric(distance, "distance", TRIPLET_DISTANCES)
        self.normalize = bool(normalize)
        self.temperature = check_number(temperature, "temperature", 0.0, allow_equal_min=False)
        self.rho = check_number(rho, "rho", 0.0, 1.0)
        self.scale = check_number(scale, "scale", 0.0, allow_equal_min=False)
        self.expansion = deserialize_expansion(expansion)
        self.seed = seed
        self._seed_generator = make_seed_generator(seed)
        if self.mining == "all" and self.rho > 0:
            raise ValueError("rho > 0 needs a miner that picks triplets; mining='all' does not.")

    def _embeddings(self, embeddings):
        embeddings = normalize_if(embeddings, self.normalize)
        return embeddings * self.scale if self.scale != 1.0 else embeddings

    def _similarities(self, embeddings, labels):
        if self.form != "nca":
            return None
        return pair_matrices(embeddings, labels, "cosine", self.expansion, self.default_pooling)

    def _per_triplet(self, d_ap, d_an, s_ap=None, s_an=None):
        if self.form == "hinge":
            return tf.nn.relu(d_ap - d_an + self.margin)
        if self.form == "softplus":
            return tf.nn.softplus(d_ap - d_an)
        return tf.nn.softplus((s_an - s_ap) / self.temperature)

    def compute(self, labels, embeddings):
        embeddings = self._embeddings(embeddings)
        matrices = pair_matrices(embeddings, labels, self.distance, self.expansion, self.default_pooling)
        sims = self._similarities(embeddings, labels)
        if self.mining == "all":
            return self._all_triplets(matrices, sims)
        triplets = mining_lib.mine_triplets(
            tf.stop_gradient(matrices.positive),
            tf.stop_gradient(matrices.negative),
            labels,
            self.mining,
            margin=self.margin,
            seed=self._seed_generator,
            embedding_dim=embeddings.shape[-1],
        )
        triplets, swapped = mining_lib.apply_rho(triplets, labels, self.rho, self._seed_generator)
        ap = tf.stack([triplets.anchor, triplets.positive], axis=1)
        an = tf.stack([triplets.anchor, triplets.negative], axis=1)
        d_ap = tf.gather_nd(matrices.positive, ap)
        d_an = tf.where(swapped, tf.gather_nd(matrices.positive, an), tf.gather_nd(matrices.negative, an))
        s_ap = s_an = None
        if sims is not None:
            s_ap = tf.gather_nd(sims.positive, ap)
            s_an = tf.where(swapped, tf.gather_nd(sims.positive, an), tf.gather_nd(sims.negative, an))
        return masked_mean(self._per_triplet(d_ap, d_an, s_ap, s_an), triplets.valid)

    def _all_triplets(self, matrices, sims):
        """Mean over every valid triplet (a, p, n) of the B×B×B loss tensor.

        O(B³) is inherent here: each triplet has its own hinge.
        """
        pos_mask, neg_mask = matrices.positive_mask, matrices.negative_mask
        valid = tf.logical_and(pos_mask[:, :, None], neg_mask[:, None, :])
        if self.form == "nca":
            per = self._per_triplet(None, None, sims.positive[:, :, None], sims.negative[:, None, :])
        else:
            per = self._per_triplet(matrices.positive[:, :, None], matrices.negative[:, None, :])
        if self.form == "hinge":
            valid = tf.logical_and(valid, per > 0)
        return masked_mean(per, valid)

    def get_config(self):
        config = super().get_config()
        config.update(
            margin=self.margin,
            mining=self.mining,
            form=self.form,
            distance=self.distance,
            normalize=self.normalize,
            temperature=self.temperature,
            rho=self.rho,
            scale=self.scale,
            expansion=serialize_expansion(self.expansion),
            seed=self.seed if not hasattr(self.seed, "get_config") else None,
        )
        return config

