"""Roth et al.'s embedded batch samplers: greedy coreset (GC), distance-distribution
matching (DDM) and Fréchet-distance matching (FRD) (Roth et al., "Revisiting Training
Strategies and Generalization Performance in Deep Metric Learning", ICML 2020, §3.2,
Tables 7–9).

They choose each batch of B = b images (b/n classes × n images) from a memory bank
M ∈ ℝ^{N×D} of the training split's current embeddings (`tfdml.data.MemoryBank`):

- **GC**: a pool B* of b* images drawn from M without replacement; the first centre
  is a uniform pool member, then argmax_{x ∈ B*} min_{c ∈ C} ‖x − c‖² is added until
  |C| = b/n (ties → the lowest pool position; a centre is never chosen twice). Each
  centre is followed by n − 1 other images of its class (without replacement when
  the class has enough, else with replacement; the image itself for a one-image
  class). Two centres may share a class.
- **Candidates for DDM and FRD**: B* is an SPC batch of b*/n class draws × n images.
  The class draws run through consecutive random permutations of all classes (so
  they are distinct when the split has ≥ b*/n classes and balanced otherwise — Roth
  et al.'s code draws with replacement); a class drawn k times contributes k·n
  images, without replacement when it has that many. Each of m candidates takes b/n
  distinct classes present in B* and n of their B* images (without replacement).
  The candidate with the lowest cost (first on ties) is the batch.
- **DDM**, `cost="paper"`: h* is the 50-bin histogram, normalised to sum 1, of B*'s
  pairwise Euclidean distances (i < j) over [min, max] of those distances (bin r:
  min + rΔ ≤ d < min + (r + 1)Δ, Δ = (max − min)/50, the last bin closed); h_B the
  candidate's over the same bins; cost = W₁(h_B, h*) = Δ · Σ_r |CDF_B(r) − CDF*(r)|.
  `cost="reference"` is the public code's cost ‖μ_B − μ*‖₂ + ‖σ_B − σ*‖₂ +
  75 · (W(h_B, h*) + W(h*, h_B)) with per-dimension means μ and standard deviations σ
  (ddof 0) of the embeddings, and W computed on the histograms as distributions
  over the bin centres — i.e. W = W₁ above, so the last term is 150 · W₁. (The
  public code instead passes the 50 histogram values to
  `scipy.stats.wasserstein_distance` as samples, which compares the sets of bin
  heights and ignores where the mass lies.) If all distances in B* are equal, W₁ = 0.
- **FRD**: ‖μ_B − μ*‖² + Tr(Σ_B) + Tr(Σ*) − 2 Tr((Σ_B Σ*)^{1/2}), with Σ the unbiased
  (ddof 1) covariances, each plus 1e-8·I (used everywhere in the formula). b < D
  makes Σ_B rank-deficient, so the trace term is Σ_i √max(λ_i, 0) over the
  eigenvalues λ_i of the symmetric Σ*^{1/2} Σ_B Σ*^{1/2} (same spectrum as Σ_B Σ*).

Everything runs on the CPU in float64, except DDM's pool distances (float32 on
mean-centred embeddings, see `ddm_costs`; float64 cost ~2.5× more, the largest part of
a batch). Distances use the Gram form ‖x‖² + ‖y‖² − 2x·y. The dense linear algebra
(Gram matrices, covariances, eigendecompositions) runs through TensorFlow's kernels
(DDM's distances and histograms in one XLA-compiled function), which stay fast when
the CPU is shared with training (threaded OpenBLAS LAPACK calls slow down ~100× when
the cores are oversubscribed).
"""
import numpy as np
import tensorflow as tf

from tfdml.data.samplers import EMBEDDED_SAMPLERS, ClassMembers, check_classes_per_batch

DDM_COSTS = ("paper", "reference")
HISTOGRAM_BINS = 50
COVARIANCE_EPSILON = 1e-8


def greedy_coreset(points, num_centres, first):
    """Greedy k-centre selection with squared Euclidean distances.

    Distances to each new centre are ‖x‖² + ‖c‖² − 2 x·c (one matrix-vector product,
    clipped at 0).

    Args:
        points: (P, D) pool embeddings.
        num_centres: |C|, at most P.
        first: pool position of the first centre.

    Returns:
        int64 array of `num_centres` pool positions, in the order chosen.
    """
    points = np.asarray(points, np.float64)
    squared = np.einsum("ij,ij->i", points, points)

    def distances_to(centre):
        return np.maximum(squared + squared[centre] - 2.0 * (points @ points[centre]), 0.0)

    chosen = np.empty(num_centres, np.int64)
    chosen[0] = first
    nearest = distances_to(first)
    nearest[first] = -np.inf
    for k in range(1, num_centres):
        centre = int(np.argmax(nearest))
        chosen[k] = centre
        np.minimum(nearest, distances_to(centre), out=nearest)
        nearest[centre] = -np.inf
    return chosen


@tf.function(jit_compile=True, reduce_retracing=True)
def _distance_histograms(points, ids, candidates, bins):
    """One XLA pass: B*'s pairwise distances (Gram form; 0 between copies of one image),
    their range over i < j, and the bin counts of the pool's and of every candidate's
    pairs (bin r holds low + rΔ ≤ d < low + (r + 1)Δ, the last bin also d = high)."""
    squared = tf.reduce_sum(points * points, axis=1)
    gram = tf.matmul(points, points, transpose_b=True)
    distances = tf.sqrt(tf.maximum(squared[:, None] + squared[None, :] - 2.0 * gram, 0.0))
    distances = tf.where(tf.equal(ids[:, None], ids[None, :]), tf.zeros_like(distances), distances)
    size = tf.shape(points)[0]
    upper = tf.range(size)[:, None] < tf.range(size)[None, :]
    low = tf.reduce_min(tf.where(upper, distances, np.inf))
    high = tf.reduce_max(tf.where(upper, distances, -np.inf))
    width = tf.where(high > low, (high - low) / bins, 1.0)

    def bin_of(values):
        return tf.clip_by_value(tf.cast(tf.floor((values - low) / width), tf.int32), 0, bins - 1)

    pool_counts = tf.math.unsorted_segment_sum(tf.cast(upper, points.dtype), bin_of(distances), bins)
    count, size = tf.shape(candidates)[0], tf.shape(candidates)[1]
    shape = (count, size, size)
    pairs = tf.stack([tf.broadcast_to(candidates[:, :, None], shape), tf.broadcast_to(candidates[:, None, :], shape)],
                     axis=-1)
    blocks = tf.gather_nd(distances, pairs)  # (m, b, b)
    in_pair = tf.broadcast_to(tf.range(size)[:, None] < tf.range(size)[None, :], shape)
    segments = bin_of(blocks) + bins * tf.range(count)[:, None, None]
    counts = tf.math.unsorted_segment_sum(tf.cast(in_pair, points.dtype), segments, count * bins)
    return pool_counts, tf.reshape(counts, (count, bins)), low, high


def ddm_costs(pool, candidates, cost="paper", bins=HISTOGRAM_BINS, pool_ids=None):
    """DDM cost of every candidate (see the module docstring).

    The pool's distances are computed in float32 (the bank's precision) on the
    mean-centred embeddings, which keeps the Gram form's rounding relative to the
    spread of the pool; a distance can change bin only within ~1e-7·‖x − μ‖² of a bin
    edge. Copies of the same image (`pool_ids`) are at distance exactly 0.

    Args:
        pool: (P, D) embeddings of B*.
        candidates: (m, b) int pool positions of each candidate batch.
        cost: "paper" or "reference".
        bins: number of histogram bins.
        pool_ids: (P,) image ids of the pool (default: all different).

    Returns:
        float64 array (m,).
    """
    if cost not in DDM_COSTS:
        raise ValueError(f"Unknown cost={cost!r}; expected one of {DDM_COSTS}.")
    pool = np.asarray(pool, np.float64)
    candidates = np.asarray(candidates, np.int32)
    ids = np.arange(len(pool)) if pool_ids is None else np.asarray(pool_ids)
    centred = (pool - pool.mean(axis=0)).astype(np.float32)
    pool_counts, counts, low, high = (t.numpy().astype(np.float64) for t in _distance_histograms(
        tf.constant(centred), tf.constant(ids, tf.int64), tf.constant(candidates), bins))
    costs = np.zeros(len(candidates))
    if high > low:
        pool_cdf = np.cumsum(pool_counts) / pool_counts.sum()
        cdf = np.cumsum(counts, axis=1) / counts.sum(axis=1, keepdims=True)
        costs = (high - low) / bins * np.sum(np.abs(cdf - pool_cdf), axis=1)
    if cost == "reference":
        mean, std = pool.mean(axis=0), pool.std(axis=0)
        batches = pool[candidates]
        costs = (np.linalg.norm(batches.mean(axis=1) - mean, axis=1)
                 + np.linalg.norm(batches.std(axis=1) - std, axis=1) + 150.0 * costs)
    return costs


def _psd_sqrt(matrix):
    values, vectors = tf.linalg.eigh(matrix)
    return tf.matmul(vectors * tf.sqrt(tf.maximum(values, 0.0)), vectors, transpose_b=True)


def _trace_sqrt_product(sqrt_a, a, y, epsilon):
    projected = tf.matmul(y, sqrt_a)
    product = tf.matmul(projected, projected, transpose_a=True) + epsilon * a
    return tf.reduce_sum(tf.sqrt(tf.maximum(tf.linalg.eigvalsh(product), 0.0)), axis=-1)


def psd_sqrt(matrix):
    """Symmetric square root of a symmetric positive semi-definite matrix (eigh;
    negative round-off eigenvalues clipped to 0)."""
    return _psd_sqrt(tf.constant(matrix, tf.float64)).numpy()


def trace_sqrt_product(sqrt_a, a, y, epsilon=0.0):
    """Tr(((YᵀY + εI) A)^{1/2}) = Σ √max(λ, 0) over the eigenvalues λ of the symmetric
    A^{1/2} (YᵀY + εI) A^{1/2} = (Y A^{1/2})ᵀ(Y A^{1/2}) + εA (same spectrum).

    Args:
        sqrt_a: (D, D) symmetric square root of the PSD matrix A.
        a: (D, D) the matrix A.
        y: (..., n, D) factors of the PSD matrices YᵀY (n < D allowed).
        epsilon: ε.

    Returns:
        array of shape y.shape[:-2].
    """
    args = [tf.constant(v, tf.float64) for v in (sqrt_a, a, y)]
    return _trace_sqrt_product(*args, tf.constant(epsilon, tf.float64)).numpy()


@tf.function(reduce_retracing=True)
def _frd_costs(pool, candidates):
    count, dim = tf.cast(tf.shape(pool)[0], tf.float64), tf.shape(pool)[1]
    pool_mean = tf.reduce_mean(pool, axis=0)
    centred = pool - pool_mean
    pool_cov = (tf.matmul(centred, centred, transpose_a=True) / (count - 1.0)
                + COVARIANCE_EPSILON * tf.eye(dim, dtype=tf.float64))
    batches = tf.gather(pool, candidates)  # (m, b, D)
    mean = tf.reduce_mean(batches, axis=1, keepdims=True)
    y = (batches - mean) / tf.sqrt(tf.cast(tf.shape(candidates)[1], tf.float64) - 1.0)
    trace_root = _trace_sqrt_product(_psd_sqrt(pool_cov), pool_cov, y, COVARIANCE_EPSILON)
    mean_term = tf.reduce_sum((mean[:, 0] - pool_mean) ** 2, axis=1)
    traces = (tf.reduce_sum(y * y, axis=[1, 2]) + tf.cast(dim, tf.float64) * COVARIANCE_EPSILON
              + tf.linalg.trace(pool_cov))
    return mean_term + traces - 2.0 * trace_root


def frd_costs(pool, candidates):
    """FRD cost of every candidate (see the module docstring).

    With Y the candidate's centred embeddings / √(b − 1), Σ_B = YᵀY + εI, so
    Σ*^{1/2} Σ_B Σ*^{1/2} = (YΣ*^{1/2})ᵀ(YΣ*^{1/2}) + εΣ* and Tr(Σ_B) = ‖Y‖²_F + Dε.

    Args:
        pool: (P, D) embeddings of B*.
        candidates: (m, b) int pool positions of each candidate batch (b ≥ 2).

    Returns:
        float64 array (m,).
    """
    return _frd_costs(tf.constant(pool, tf.float64), tf.constant(candidates, tf.int32)).numpy()


class EmbeddedSampler:
    """A batch sampler that chooses batches from a memory bank (GC, DDM or FRD).

    Pass it as `sampler=` to `tfdml.data.train_pipeline(..., with_indices=True)`;
    the bank must be filled (`MemoryBank.fill`) before the pipeline is iterated and
    updated after every training step (`MemoryBank.update`; with `model.fit`, the
    callback from `tfdml.data.prepare_memory_bank`).

    Staleness: like Roth et al., who precompute ⌊N/b⌋ batches per epoch from M,
    the generator copies the bank once every `refresh_every` batches (default
    ⌊N/b⌋) and draws the following batches from that copy; tf.data prefetching
    draws a few batches ahead on top of that.

    Args:
        name: "gc", "ddm" or "frd".
        bank: a `tfdml.data.MemoryBank` with one row per image of the split.
        pool_size: b*, the size of the pool B* (Roth et al.: 1024).
        candidates: m, candidate batches for DDM and FRD (Roth et al.: 10).
        cost: DDM cost, "paper" or "reference".
        refresh_every: batches drawn from one copy of the bank (None: ⌊N/b⌋).
    """

    def __init__(self, name, bank, pool_size=1024, candidates=10, cost="paper", refresh_every=None):
        if name not in EMBEDDED_SAMPLERS:
            raise ValueError(f"Unknown embedded sampler name={name!r}; expected one of {EMBEDDED_SAMPLERS}.")
        for key, value in (("pool_size", pool_size), ("candidates", candidates)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}.")
        if cost not in DDM_COSTS:
            raise ValueError(f"Unknown cost={cost!r}; expected one of {DDM_COSTS}.")
        if refresh_every is not None and (not isinstance(refresh_every, (int, np.integer)) or refresh_every < 1):
            raise ValueError(f"refresh_every must be None or a positive int, got {refresh_every!r}.")
        self.name = name
        self.bank = bank
        self.pool_size = int(pool_size)
        self.candidates = int(candidates)
        self.cost = cost
        self.refresh_every = refresh_every

    def check(self, labels, batch_size, samples_per_class):
        """Raises ValueError naming the argument if the settings are impossible."""
        labels = np.asarray(labels)
        check_classes_per_batch(batch_size, samples_per_class, len(np.unique(labels)))
        if self.pool_size < batch_size:
            raise ValueError(f"pool_size ({self.pool_size}) must be >= batch_size ({batch_size}).")
        if self.name == "gc" and self.pool_size > len(labels):
            raise ValueError(f"pool_size ({self.pool_size}) exceeds the {len(labels)} images of the split "
                             "(GC draws the pool without replacement).")
        if self.name != "gc" and self.pool_size % samples_per_class:
            raise ValueError(f"pool_size ({self.pool_size}) must be divisible by samples_per_class "
                             f"({samples_per_class}) for sampler {self.name!r}.")
        if self.name == "frd" and batch_size < 2:
            raise ValueError(f"sampler 'frd' needs batch_size >= 2 for a covariance, got {batch_size}.")
        if self.bank is not None and self.bank.num_items != len(labels):
            raise ValueError(f"The memory bank has {self.bank.num_items} rows but the split has {len(labels)} "
                             "images (bank num_items must equal the split size).")

    def sample(self, embeddings, members, batch_size, samples_per_class, rng, details=False):
        """One batch chosen from a copy of the bank.

        Args:
            embeddings: (N, D) bank contents.
            members: `tfdml.data.samplers.ClassMembers` of the split's labels.
            batch_size: b.
            samples_per_class: n.
            rng: `numpy.random.Generator`.
            details: also return a dict with the pool (bank indices), the centres
                (GC) or candidates and costs (DDM, FRD), in pool positions.

        Returns:
            int32 array (b,) of bank indices grouped by class, n per chosen class
            (and the details dict if requested).
        """
        with tf.device("/CPU:0"):  # host-side work: keep it off the accelerators
            return self._sample(embeddings, members, batch_size, samples_per_class, rng, details)

    def _sample(self, embeddings, members, batch_size, samples_per_class, rng, details):
        per_batch = batch_size // samples_per_class
        if self.name == "gc":
            pool = rng.choice(len(embeddings), size=self.pool_size, replace=False)
            centres = greedy_coreset(embeddings[pool], per_batch, int(rng.integers(self.pool_size)))
            images = pool[centres]
            others = members.draw(members.class_ids[images], samples_per_class - 1, rng, exclude=images)
            batch = np.column_stack([images, others.reshape(per_batch, samples_per_class - 1)]).ravel()
            info = {"pool": pool, "centres": centres}
        else:
            pool, pool_classes = _spc_pool(members, self.pool_size // samples_per_class, samples_per_class, rng)
            candidates = _candidates(pool_classes, self.candidates, per_batch, samples_per_class, rng)
            points = embeddings[pool]
            if self.name == "ddm":
                costs = ddm_costs(points, candidates, self.cost, pool_ids=pool)
            else:
                costs = frd_costs(points, candidates)
            batch = pool[candidates[int(np.argmin(costs))]]
            info = {"pool": pool, "candidates": candidates, "costs": costs}
        batch = batch.astype(np.int32)
        return (batch, info) if details else batch

    def batches(self, labels, batch_size, samples_per_class, seed=0):
        """Infinite generator of int32 index batches (B,), reading the bank."""
        self.check(labels, batch_size, samples_per_class)
        members = ClassMembers(labels)
        rng = np.random.default_rng(seed)
        refresh = self.refresh_every or max(1, len(members.labels) // batch_size)
        while True:
            embeddings = self.bank.snapshot()
            for _ in range(refresh):
                yield self.sample(embeddings, members, batch_size, samples_per_class, rng)


def _spc_pool(members, class_draws, samples_per_class, rng):
    """B*: `class_draws` balanced class draws × n images. Returns (bank indices of the
    pool, int array: the number of the distinct class drawn of each pool position)."""
    repeats = -(-class_draws // members.num_classes)
    drawn = np.concatenate([rng.permutation(members.num_classes) for _ in range(repeats)])[:class_draws]
    classes, counts = np.unique(drawn, return_counts=True)
    pool = members.draw(classes, counts * samples_per_class, rng)
    return pool, np.repeat(np.arange(len(classes)), counts * samples_per_class)


def _candidates(pool_classes, count, per_batch, samples_per_class, rng):
    """(count, per_batch · n) pool positions: per candidate, `per_batch` distinct
    classes of the pool with n of their pool positions each (without replacement)."""
    positions = ClassMembers(pool_classes)
    chosen = np.argsort(rng.random((count, positions.num_classes)), axis=1)[:, :per_batch]
    return positions.draw(chosen.ravel(), samples_per_class, rng).reshape(count, per_batch * samples_per_class)
