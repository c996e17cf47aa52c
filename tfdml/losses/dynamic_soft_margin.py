"""Dynamic soft margin loss (Zhang & Rusinkiewicz, ICCV 2019): a CDF-weighted soft margin."""
import keras
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_choice, check_int, check_number
from tfdml.losses.base import FreezableState, MetricLoss
from tfdml.losses.ops import masked_mean
from tfdml.losses.registry import register

TRIPLETS = ("hardest", "all")
BATCH_HISTOGRAMS = ("normalized", "counts")


@keras.saving.register_keras_serializable(package="tfdml")
class RunningHistogram(keras.layers.Layer):
    """The dynamic soft margin loss's running histogram h as a model-trackable state layer.

    One non-trainable variable `histogram` of `bins` values (zero until the
    first batch). Under a `tf.distribute` strategy it is mirrored with the
    ONLY_FIRST_REPLICA aggregation: the loss computes h from the all-gathered
    global batch, identical on every replica. Tracked by the model
    (`tfdml.losses.attach_loss_state`, done by `EmbeddingModel.compile`), it is
    saved in checkpoints and `.keras` files, so a resumed run continues with its
    histogram.

    Args:
        bins: number of histogram bins.
        dtype: dtype of the histogram.
    """

    def __init__(self, bins, dtype="float32", **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        self.bins = int(bins)
        self.histogram = self.add_weight(shape=(self.bins,), initializer="zeros", trainable=False,
                                         dtype=self.dtype_policy.variable_dtype, name="histogram",
                                         aggregation="only_first_replica")

    def call(self, inputs):
        """Returns `inputs`: never used as a model layer, present for Keras' `Layer` contract."""
        return inputs

    def get_config(self):
        """Config of this layer: its `bins` (Keras serialisation)."""
        return {**super().get_config(), "bins": self.bins}


@register("dynamic_soft_margin")
class DynamicSoftMarginLoss(FreezableState, MetricLoss):
    """Dynamic soft margin loss (Zhang & Rusinkiewicz, "Learning Local
    Descriptors With a CDF-Based Dynamic Soft Margin", ICCV 2019, Sec. 3).

    On Euclidean distances d of L2-normalised embeddings, each triplet has the
    relative distance x = d_ap − d_an ∈ [−2, 2]. Instead of a fixed margin, the
    paper designs the loss through its derivative: ∂L/∂x = Φ(x), the CDF of the
    running distribution of x, so triplets that are hard relative to the
    current distribution get larger gradients (a soft margin that moves with
    training). The CDF comes from a histogram of `bins` bins at
    x_b = min_value + b·w, w = (max_value − min_value)/(bins − 1), b = 0 … bins−1:

    1. each x of the batch votes 1 − φ into bin ⌊t⌋ and φ into bin ⌊t⌋ + 1,
       t = (x − min_value)/w, φ = t − ⌊t⌋ (x clipped to [min_value, max_value]);
    2. h ← (1 − μ) h + μ h_batch, with μ = `momentum` (μ = 1 for the first
       batch, when h is still zero), then h ← h / Σh; the running histogram h
       is the loss's state (`loss.histogram`, a non-trainable variable of
       `loss.state_layer`, so a model that tracks the loss's state saves it in
       checkpoints and `.keras` files; `reset_histogram()` zeroes it; a batch
       without a triplet or with a non-finite embedding, and evaluation
       (`model.evaluate`, validation in `fit`), leave it unchanged);
    3. Φ(x) = Σ_{b ≤ ⌊t⌋} h_b, and

           loss = 1/|T| Σ_{(a,p,n) ∈ T} Φ(x_apn) · x_apn

       with Φ a constant in the gradient (as in the authors' code), so
       ∂loss/∂x = Φ(x)/|T|. The value is relative to the running histogram:
       compare values from different training steps only against the same
       histogram (e.g. after `reset_histogram()`).

    Triplets T (`triplets`):

    - "hardest" (default, the paper's HardNet-style mining generalised to
      labelled batches): every ordered positive pair (a, p) with its hardest
      negative, d_an = min(min_k d_ak, min_k d_pk) over the samples k of other
      classes;
    - "all": every (a, p, n) with p ≠ a of a's class and n of another class
      (pytorch-metric-learning's `DynamicSoftMarginLoss` with labels).

    `batch_histogram`: "normalized" (default, the authors' code) mixes the
    normalised batch histogram into h; "counts" mixes the raw vote counts
    (pytorch-metric-learning), which weights a batch of n triplets n times
    more. `histogram_gradient=True` lets the gradient also flow through the
    batch's votes φ into Φ (pytorch-metric-learning's autograd does).

    Defaults: bins = 512, μ = 0.01, [min_value, max_value] = [−2, 2] are the
    authors' (their training script uses batch size / 2 = 512 bins). The
    authors' outlier filter (negatives closer than 0.008 are ignored, for
    duplicate patches in the Brown data set) is not applied.
    pytorch-metric-learning's `DynamicSoftMarginLoss(min_val, num_bins,
    momentum)` is `bins=num_bins, min_value=min_val, max_value=|min_val| −
    2|min_val|/num_bins, triplets="all", batch_histogram="counts",
    histogram_gradient=True` (it fails for x beyond its last bin, which this
    class clips).

    Embedding Expansion: every negative distance d_an is the EE-pooled one
    (minimum over the pools; default pooling "class"), in the mining, the
    histogram and the loss alike.

    Args:
        bins: number of histogram bins (≥ 2).
        momentum: μ, weight of the current batch's histogram, in (0, 1].
        min_value: the lower end of the range of x covered by the bins.
        max_value: the upper end of that range (the last bin's position).
        triplets: "hardest" or "all".
        batch_histogram: "normalized" or "counts".
        histogram_gradient: differentiate through the batch's histogram votes.
        expansion: `tfdml.EmbeddingExpansion` or None.

    Returns:
        The scalar loss when called as `loss(labels, embeddings)`; it updates
        the running histogram.

    Example (two coinciding points of class 0 at distance √2 from the point of
    class 1; three bins at −2, 0, 2: x = −√2 votes √2/2 into the first bin, so
    Φ(x) = √2/2 and the loss is (√2/2)·(−√2)):

    >>> loss = tfdml.losses.DynamicSoftMarginLoss(bins=3)
    >>> value = loss([0, 0, 1], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> round(float(value), 4)
    -1.0
    """

    config_args = ("bins", "momentum", "min_value", "max_value", "triplets", "batch_histogram",
                   "histogram_gradient", "expansion")
    supports_expansion = True
    default_pooling = "class"

    def __init__(self, bins=512, momentum=0.01, min_value=-2.0, max_value=2.0, triplets="hardest",
                 batch_histogram="normalized", histogram_gradient=False, expansion=None,
                 name="dynamic_soft_margin_loss", **kwargs):
        super().__init__(name=name, expansion=expansion, **kwargs)
        self.bins = check_int(bins, "bins", minimum=2)
        self.momentum = check_number(momentum, "momentum", greater_than=0.0, maximum=1.0)
        self.min_value = check_number(min_value, "min_value")
        self.max_value = check_number(max_value, "max_value", greater_than=self.min_value)
        self.triplets = check_choice(triplets, "triplets", TRIPLETS)
        self.batch_histogram = check_choice(batch_histogram, "batch_histogram", BATCH_HISTOGRAMS)
        self.histogram_gradient = bool(histogram_gradient)
        self.state_layer = RunningHistogram(self.bins, dtype=self.compute_dtype, name=f"{name}_state")

    @property
    def histogram(self):
        """The running histogram h, a (bins,) non-trainable variable of `state_layer`."""
        return self.state_layer.histogram

    def build_state(self, embedding_dim):
        """The state layer (the histogram does not depend on `embedding_dim`)."""
        return self.state_layer

    def reset_histogram(self):
        """Zeroes the running histogram (the next batch starts it afresh)."""
        self.histogram.assign(tf.zeros_like(self.histogram))

    def compute(self, labels, embeddings):
        """The loss of the batch: updates the running histogram with the relative distances x of its
        triplets (`triplets`: "all", or the hardest negatives) and returns the mean of Φ(x)·x, Φ the
        histogram's CDF."""
        m = self.pair_matrices(distances.l2_normalize(embeddings), labels, "euclidean")
        if self.triplets == "hardest":
            has_negative = tf.reduce_any(m.negative_mask, axis=1)
            far = tf.constant(embeddings.dtype.max, m.negative.dtype)
            hardest = tf.reduce_min(tf.where(m.negative_mask, m.negative, far), axis=1)
            hardest = tf.where(has_negative, hardest, tf.zeros_like(hardest))
            values = m.positive - tf.minimum(hardest[:, None], hardest[None, :])
            valid = tf.logical_and(m.positive_mask, has_negative[:, None])
        else:
            values = m.positive[:, :, None] - m.negative[:, None, :]
            valid = tf.logical_and(m.positive_mask[:, :, None], m.negative_mask[:, None, :])
        values, valid = tf.reshape(values, [-1]), tf.reshape(valid, [-1])
        finite = tf.math.is_finite(values)
        used = tf.logical_and(valid, finite)
        safe = tf.where(used, values, tf.zeros_like(values))

        width = (self.max_value - self.min_value) / (self.bins - 1)
        position = (tf.clip_by_value(safe, self.min_value, self.max_value) - self.min_value) / width
        floor = tf.stop_gradient(tf.floor(position))
        low = tf.clip_by_value(tf.cast(floor, tf.int32), 0, self.bins - 1)
        share = position - floor  # φ
        if not self.histogram_gradient:
            share = tf.stop_gradient(share)
        high = tf.minimum(low + 1, self.bins - 1)
        weight = tf.cast(used, values.dtype)
        votes = (tf.math.unsorted_segment_sum(weight * (1.0 - share), low, self.bins)
                 + tf.math.unsorted_segment_sum(weight * share, high, self.bins))
        old = tf.cast(tf.stop_gradient(self.histogram.value), values.dtype)
        momentum = tf.where(tf.reduce_sum(old) > 0, tf.constant(self.momentum, values.dtype),
                            tf.ones([], values.dtype))
        if self.batch_histogram == "normalized":
            votes = tf.math.divide_no_nan(votes, tf.reduce_sum(votes))
        mixed = (1.0 - momentum) * old + momentum * votes
        mixed = tf.math.divide_no_nan(mixed, tf.reduce_sum(mixed))
        # A batch without a triplet, or with a non-finite embedding (the loss is then NaN), leaves h unchanged.
        finite_batch = tf.logical_and(tf.reduce_all(tf.math.is_finite(embeddings)),
                                      tf.reduce_all(tf.logical_or(finite, tf.logical_not(valid))))
        update = tf.logical_and(tf.reduce_any(used), finite_batch)
        histogram = old if self._frozen else tf.where(update, mixed, old)
        if not self.histogram_gradient:
            histogram = tf.stop_gradient(histogram)
        if not self._frozen:
            self.histogram.assign(tf.cast(tf.stop_gradient(histogram), self.histogram.dtype))
        cdf = tf.cumsum(histogram)
        return masked_mean(tf.gather(cdf, low) * safe, used)
