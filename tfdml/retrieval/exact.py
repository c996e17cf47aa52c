"""Squared Euclidean distances: a fast float32 estimate with a proven error bound, and the exact value.

Every search in tfdml ranks with two kinds of distance:

- the *estimate* ``a = ‖ĉ_q‖² + ‖ĉ_r‖² − 2⟨ĉ_q, ĉ_r⟩``, one float32 matmul per
  block, on points centred by the reference mean μ (``ĉ = fl(x − μ)``);
  centring changes no distance but removes most of the cancellation that makes
  ‖r‖² − 2⟨q, r⟩ useless when embeddings are squeezed together (the ranking
  sweep folds the norms into the matmul: ⟨[ĉ_q, s_q, 1], [−2ĉ_r, 1, s_r]⟩);
- the *exact* value ``Σ_i (q_i − r_i)²`` evaluated in float64 from the float32
  embeddings (differences of float32 numbers are exact in float64), used only
  where the estimate cannot decide.

Error bound (Higham, "Accuracy and Stability of Numerical Algorithms", §3.1:
a float32 dot product of length D has error ≤ γ_D Σ|x_i y_i|, γ_D ≈ D·u, for any
summation order or FMA use). With n = ‖ĉ‖ and u = 2⁻²⁴:

    |a − ‖q − r‖²| ≤ ((D + 8)·u + t)·(n_q + n_r)²,

where (D + 2)·u covers the norms and the dot product (or the augmented dot
product with norms rounded once), 4u the rounding of the centring and the two
additions, and t = 2·2⁻¹¹ when TensorFloat-32 matmuls are active on a GPU
(inputs rounded to 10 mantissa bits). `error_bound` adds a
safety factor of 1.25 and uses the largest reference norm for n_r, so one
bound per query holds against every reference.

Ties in the exact distance are broken by the lower (original) reference index.
"""
import numpy as np
import tensorflow as tf

UNIT_ROUNDOFF = 2.0 ** -24
_SAFETY = 1.25
# Pairs per batch of exact distances: 4096 × D float64 per operand.
EXACT_BATCH = 4096


def centre(references):
    """float32 mean of the references (computed in float64)."""
    return np.asarray(references).mean(axis=0, dtype=np.float64).astype(np.float32)


def centred(points, mean):
    """(ĉ = fl(x − μ) float32, ‖ĉ‖² float32) as TF tensors."""
    points = tf.convert_to_tensor(points, tf.float32)
    shifted = points - tf.convert_to_tensor(mean, tf.float32)[None, :]
    return shifted, tf.reduce_sum(tf.square(shifted), axis=1)


def _tf32_active():
    return bool(tf.config.list_logical_devices("GPU")) and \
        tf.config.experimental.tensor_float_32_execution_enabled()


TF32_ROUNDING = 2.0 * 2.0 ** -11


def error_scale(dim, tf32=None):
    """κ with |estimate − exact| ≤ κ·(n_q + n_r)² (see module docstring).

    Args:
        dim: embedding dimension D.
        tf32: include the TensorFloat-32 term (default: when a GPU is visible and
            TF32 execution is enabled).
    """
    tf32 = _tf32_active() if tf32 is None else tf32
    return _SAFETY * ((int(dim) + 8) * UNIT_ROUNDOFF + (TF32_ROUNDING if tf32 else 0.0))


def error_bound(query_sq_norms, max_reference_sq_norm, scale):
    """Per-query bound δ_q = κ (n_q + max n_r)² on the estimate's error (same dtype as the norms)."""
    return scale * tf.square(tf.sqrt(query_sq_norms) + tf.sqrt(max_reference_sq_norm))


def estimate(queries_centred, query_sq_norms, references_centred, reference_sq_norms):
    """(Q, N) float32 estimates of ‖q − r‖² (one matmul)."""
    dots = tf.matmul(queries_centred, references_centred, transpose_b=True)
    return query_sq_norms[:, None] + reference_sq_norms[None, :] - 2.0 * dots


@tf.function(reduce_retracing=True)
def exact_pair_distances(queries, references, query_ids, reference_ids):
    """Exact ‖queries[i] − references[j]‖² (float64) for the pairs (query_ids[p], reference_ids[p]).

    Computed by differences in float64, `EXACT_BATCH` pairs at a time, so memory
    is O(EXACT_BATCH × D) whatever the number of pairs.
    """
    count = tf.shape(query_ids)[0]
    batches = tf.maximum(1, (count + EXACT_BATCH - 1) // EXACT_BATCH)
    out = tf.TensorArray(tf.float64, size=batches, infer_shape=False)

    def body(b, out):
        lo = b * EXACT_BATCH
        hi = tf.minimum(lo + EXACT_BATCH, count)
        q = tf.cast(tf.gather(queries, query_ids[lo:hi]), tf.float64)
        r = tf.cast(tf.gather(references, reference_ids[lo:hi]), tf.float64)
        return b + 1, out.write(b, tf.reduce_sum(tf.square(q - r), axis=1))

    _, out = tf.while_loop(lambda b, _: b < batches, body, (tf.constant(0), out))
    return tf.reshape(out.concat(), [-1])


def exact_distances(queries, references, query_ids, reference_ids):
    """numpy wrapper of `exact_pair_distances` (float64 array)."""
    query_ids = np.asarray(query_ids, dtype=np.int64)
    if query_ids.size == 0:
        return np.zeros(0, np.float64)
    return exact_pair_distances(queries, references, tf.constant(query_ids),
                                tf.constant(np.asarray(reference_ids, dtype=np.int64))).numpy()


def round_down(values):
    """float64 → float32, rounded towards −∞ (thresholds that must not move up)."""
    values = np.asarray(values, dtype=np.float64)
    out = values.astype(np.float32)
    return np.where(out > values, np.nextafter(out, np.float32(-np.inf)), out).astype(np.float32)


def round_up(values):
    """float64 → float32, rounded towards +∞."""
    values = np.asarray(values, dtype=np.float64)
    out = values.astype(np.float32)
    return np.where(out < values, np.nextafter(out, np.float32(np.inf)), out).astype(np.float32)
