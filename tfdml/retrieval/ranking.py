"""Exact rank statistics for retrieval evaluation, without a top-1000 selection.

Retrieval metrics need two things per query q (references ranked by exact
distance, ties by the lower original index, q itself excluded when the queries
are the references):

- the rank of the nearest same-class reference, i.e. how many other-class
  references are closer (Recall@K for every K is `rank < K`);
- the relevance of the first L_q ranked references (L_q = R_q, at most the
  largest class, for MAP@R / R-Precision / mAP_c; 1000 for mAP@1000).

Both are computed exactly from float32 estimates with a proven error bound δ_q
(`tfdml.retrieval.exact`); exact float64 distances are evaluated only where an
estimate cannot decide:

1. *Nearest positives* (per query chunk, against the chunk's class range of the
   label-sorted references): the exact nearest positive t_q (positives whose
   estimate is within 2δ_q of the smallest), and a cut τ_q = (L_q-th smallest
   estimate seen) + 2δ_q beyond which no reference can be among the first L_q.
2. *One sweep over blocks* (queries × references, one float32 matmul each, the
   norms folded into the matmul; upper triangle only when the queries are the
   references, each block serving its rows and its columns). Only pairs with an
   estimate below u_q = max(τ_q, t_q + δ_q) matter; they are found through
   minima over tiles of `TILE` entries, so a block costs little more than its
   matmul. Per query: the count of references with estimate < t_q − δ_q
   (certainly closer than the nearest positive; counting stops at `max_rank`),
   and the candidates: estimate ≤ τ_q or within [t_q − δ_q, t_q + δ_q]. τ_q
   tightens as candidates arrive (any L_q of them bound the L_q-th distance).
3. *Resolution*: candidates near t_q get exact distances (→ exact rank);
   candidates ≤ τ_q are sorted by estimate, and only groups of estimates within
   2δ_q of each other that mix relevant and irrelevant references are re-ordered
   by exact distance (an order among equally relevant references changes no
   metric).

Memory: O(chunk × block) for the sweep plus the candidates, which are pruned
whenever τ tightens: about Σ L_q pairs while that fits in one chunk × block
(symmetric sweep), else about chunk × L_q (each query chunk is resolved when
its sweep ends) — never N×N, also for mAP@1000.
"""
import collections
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfdml.retrieval import exact

# Entries per tile of the sweep's minimum reductions.
TILE = 32
# Estimate of any pair with a padding row.
_FAR = 1e30
# Shapes of the last (partial) sweep blocks are rounded up to a multiple of this.
_SHAPE_STEP = 1024
# Sweep blocks computed concurrently.
_BLOCKS_IN_FLIGHT = 2
# The symmetric sweep (which keeps every candidate until the end) is used while the candidates, about Σ L_q
# pairs, fit in this many chunk × block blocks; above, each query chunk is resolved when its sweep ends.
_SYMMETRIC_BLOCKS = 1


class RankedRelevance(NamedTuple):
    """Per query (original order): `first_positive_rank` (−1 without a positive),
    `relevance` (Q, max L) bool of the first L_q results, `list_lengths` L_q and
    `positives` R_q."""

    first_positive_rank: np.ndarray
    relevance: np.ndarray
    list_lengths: np.ndarray
    positives: np.ndarray


class _Side(NamedTuple):
    raw: tf.Tensor           # (n, D) float32 in the caller's order (exact distances)
    as_query: tf.Tensor      # (n_pad, D + 2) float32, label-sorted: [ĉ, ‖ĉ‖², 1]
    as_reference: tf.Tensor  # (n_pad, D + 2) float32, label-sorted: [−2ĉ, 1, ‖ĉ‖²]
    sq: np.ndarray           # (n,) float64 ‖ĉ‖², label-sorted
    labels: np.ndarray       # (n,) int64, sorted
    order: np.ndarray        # sorted position → original index


def _side(points, labels, mean, padded):
    """Label-sorted points with the augmented rows whose products are the estimates directly:
    ⟨[ĉ_q, s_q, 1], [−2ĉ_r, 1, s_r]⟩ = s_q + s_r − 2⟨ĉ_q, ĉ_r⟩ (one matmul, no broadcast additions; the
    norms s are rounded once from float64, so the error bound of `tfdml.retrieval.exact` holds)."""
    order = np.argsort(labels, kind="stable")
    n, dim = points.shape
    sq = np.zeros(n)
    augmented = []
    for role in ("query", "reference"):  # one (padded, D + 2) numpy array alive at a time
        rows = np.zeros((padded, dim + 2), np.float32)
        for start in range(0, n, 8192):  # bounded temporaries
            end = min(start + 8192, n)
            centred = points[order[start:end]] - mean  # fl(x − μ) in float32, as `exact.centred`
            if role == "query":
                wide = centred.astype(np.float64)
                sq[start:end] = np.einsum("ij,ij->i", wide, wide)
            rows[start:end, :dim] = centred if role == "query" else -2.0 * centred
        rows[:n, dim], rows[:n, dim + 1] = (sq, 1.0) if role == "query" else (1.0, sq)
        rows[n:, dim if role == "query" else dim + 1] = _FAR  # padding: estimates of 1e30, never below u
        augmented.append(tf.constant(rows))
        del rows
    return _Side(tf.constant(points), *augmented, sq, labels[order], order)


def _exact(queries, refs, q, r):
    """Exact squared distances of (sorted query position, sorted reference position) pairs."""
    return exact.exact_distances(queries.raw, refs.raw, queries.order[q], refs.order[r])


def _pad_to(n, multiple):
    return -(-n // multiple) * multiple


def _sweep_block(queries, u_rows, row0, references, u_cols, col0, rows, cols, mode):
    """One sweep block: the pairs whose estimate is below their query's threshold u.

    The estimates (rows × cols, one matmul) are reduced to minima over tiles of
    `TILE` entries (along rows for the row queries, along columns for the column
    queries in the symmetric sweep); only tiles whose minimum is below u are
    gathered and filtered, which is also where pairs outside the sweep are
    dropped (padding rows give estimates of 1e30). mode: "symmetric" (strict
    upper triangle; the columns also act as queries), "exclude_self" (same set,
    diagonal left out) or "cross".

    Returns:
        (query ids, reference ids, estimates) of the pairs below u.
    """
    est = tf.matmul(tf.slice(queries, [row0, 0], [rows, -1]), tf.slice(references, [col0, 0], [cols, -1]),
                    transpose_b=True)
    within = tf.range(TILE)[None, :]
    u_rows = tf.slice(u_rows, [row0], [rows])
    by_rows = tf.reshape(est, [rows, cols // TILE, TILE])
    hits = tf.cast(tf.where(tf.reduce_min(by_rows, axis=2) < u_rows[:, None]), tf.int32)  # (row, tile)
    values = tf.gather_nd(by_rows, hits)  # (F, TILE)
    row_ids, col_ids = row0 + hits[:, :1], col0 + hits[:, 1:] * TILE + within
    keep = tf.cast(tf.where((values < tf.gather(u_rows, hits[:, 0])[:, None]) & _valid(row_ids, col_ids, mode)),
                   tf.int32)
    queries_out = [tf.gather(row_ids[:, 0], keep[:, 0])]
    references_out = [tf.gather_nd(col_ids, keep)]
    values_out = [tf.gather_nd(values, keep)]
    if mode == "symmetric":
        u_cols = tf.slice(u_cols, [col0], [cols])
        by_cols = tf.reshape(est, [rows // TILE, TILE, cols])
        hits = tf.cast(tf.where(tf.reduce_min(by_cols, axis=1) < u_cols[None, :]), tf.int32)  # (tile, col)
        count = tf.shape(hits)[0]
        index = tf.stack([tf.broadcast_to(hits[:, :1], [count, TILE]), tf.broadcast_to(within, [count, TILE]),
                          tf.broadcast_to(hits[:, 1:], [count, TILE])], axis=2)
        values = tf.gather_nd(by_cols, index)  # (F, TILE)
        row_ids, col_ids = row0 + hits[:, :1] * TILE + within, col0 + hits[:, 1:]
        keep = tf.cast(tf.where((values < tf.gather(u_cols, hits[:, 1])[:, None])
                                & _valid(row_ids, col_ids, mode)), tf.int32)
        queries_out.append(tf.gather(col_ids[:, 0], keep[:, 0]))
        references_out.append(tf.gather_nd(row_ids, keep))
        values_out.append(tf.gather_nd(values, keep))
    return tf.concat(queries_out, 0), tf.concat(references_out, 0), tf.concat(values_out, 0)


_compiled_sweep_block = tf.function(_sweep_block, reduce_retracing=True)


def _valid(row_ids, col_ids, mode):
    """Pairs the sweep owns: the strict upper triangle (symmetric), all but the diagonal (exclude_self)."""
    if mode == "symmetric":
        return col_ids > row_ids
    if mode == "exclude_self":
        return col_ids != row_ids
    return tf.ones(tf.broadcast_dynamic_shape(tf.shape(row_ids), tf.shape(col_ids)), tf.bool)


@tf.function(reduce_retracing=True)
def _range_estimates(queries, references):
    return tf.matmul(queries, references, transpose_b=True)


def _range_block(queries, refs, a, b, c0, c1, same):
    """numpy estimates of sorted queries a:b against sorted references c0:c1 (self pairs = +inf)."""
    est = _range_estimates(queries.as_query[a:b], refs.as_reference[c0:c1]).numpy()
    if same:
        rows = np.arange(max(a, c0), min(b, c1))
        est[rows - a, rows - c0] = np.inf
    return est


def _nearest_positives(queries, refs, delta, list_lengths, same, chunk_size, tile):
    """Pass 1: exact nearest positive (squared distance, sorted ref position) and the cut τ (float64)."""
    q_count, n = len(queries.labels), len(refs.labels)
    t1 = np.full(q_count, np.inf)
    nearest = np.full(q_count, -1, np.int64)
    tau = np.full(q_count, -np.inf)
    for a in range(0, q_count, chunk_size):
        b = min(a + chunk_size, q_count)
        labels, lengths = queries.labels[a:b], list_lengths[a:b]
        longest = int(lengths.max(initial=0))
        lo = int(np.searchsorted(refs.labels, labels[0], "left"))
        hi = int(np.searchsorted(refs.labels, labels[-1], "right"))
        # The first cut τ is the L-th smallest estimate over at least 8·L references (up to a tile): the L-th
        # of just L + 1 would be about the largest distance for long lists (mAP@1000), and the sweep would keep
        # nearly every pair.
        need = min(n, max(longest + 1, min(8 * longest, tile)))
        if hi - lo < need:  # enough references for the cut τ
            lo = max(0, hi - need)
            hi = max(hi, min(n, lo + need))
        tiles = [(c, min(c + tile, hi)) for c in range(lo, hi, tile)]
        best_positive = np.full(b - a, np.inf, np.float32)
        smallest = np.full((b - a, 0), np.inf, np.float32)
        kept = []
        for c0, c1 in tiles:
            est = _range_block(queries, refs, a, b, c0, c1, same)
            positive = labels[:, None] == refs.labels[None, c0:c1]
            best_positive = np.minimum(best_positive, np.where(positive, est, np.inf).min(axis=1))
            if longest:
                take = min(longest, c1 - c0)
                part = np.partition(est, take - 1, axis=1)[:, :take]
                smallest = np.sort(np.concatenate([smallest, part], axis=1), axis=1)[:, :longest]
            kept.append(est if len(tiles) == 1 else None)
        limit = best_positive.astype(np.float64) + 2 * delta[a:b]
        pair_q, pair_r = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for (c0, c1), est in zip(tiles, kept):
            est = _range_block(queries, refs, a, b, c0, c1, same) if est is None else est
            qi, ri = np.nonzero((labels[:, None] == refs.labels[None, c0:c1]) & (est <= limit[:, None]))
            pair_q.append(qi + a)
            pair_r.append(ri + c0)
        pair_q, pair_r = np.concatenate(pair_q), np.concatenate(pair_r)
        distances = _exact(queries, refs, pair_q, pair_r)
        order = np.lexsort((refs.order[pair_r], distances, pair_q))
        first = order[_group_starts(pair_q[order])]
        t1[pair_q[first]] = distances[first]
        nearest[pair_q[first]] = pair_r[first]
        if longest:
            cut = smallest[np.arange(b - a), np.maximum(lengths - 1, 0)].astype(np.float64)
            tau[a:b] = np.where(lengths > 0, cut + 2 * delta[a:b], -np.inf)
    return t1, nearest, tau


def _group_starts(sorted_keys):
    """Boolean mask of the first element of each run of equal keys."""
    start = np.ones(len(sorted_keys), bool)
    start[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return start


class _Sweep:
    """State of pass 2 per query: counts below t − δ, candidate pairs, the tightening cut τ and the
    threshold u = max(τ, t + δ) below which a pair matters."""

    def __init__(self, q_count, padded, lo, hi, tau, delta, lengths, max_rank):
        self.below = np.zeros(q_count, np.int64)
        self.pending = []
        self._pruned_size = 0  # kept pairs after the last pruning
        self.delta, self.lengths, self.max_rank = delta, lengths, max_rank
        self.longest = int(lengths.max(initial=0))
        self.best = np.full((q_count, self.longest), np.inf, np.float32)
        pad = np.full(padded - q_count, -np.inf, np.float32)
        self.lo, self.hi, self.tau = (np.concatenate([t, pad]) for t in (lo, hi, tau))
        self._update()

    def _update(self):
        self.threshold = tf.constant(np.maximum(self.tau, self.hi))

    def add(self, q, r, est):
        """Counts the pairs certainly closer than the nearest positive, keeps the candidates, tightens τ
        (any L_q candidates bound the L_q-th nearest distance) and stops counting at `max_rank`."""
        q, r = q.astype(np.int64), r.astype(np.int64)
        lo, hi, tau = self.lo[q], self.hi[q], self.tau[q]
        below = est < lo
        self.below += np.bincount(q[below], minlength=len(self.below))
        candidate = (est <= tau) | ((est >= lo) & (est <= hi))
        q, r, est = q[candidate], r[candidate], est[candidate]
        self.pending.append((q, r, est))
        if self.longest and len(q):
            self._tighten(q, est)
        saturated = self.below >= self.max_rank
        self.lo[:len(saturated)][saturated] = self.hi[:len(saturated)][saturated] = -np.inf
        self._prune()
        self._update()

    def _prune(self):
        """Drops kept candidates that the tightened τ (or a saturated count) has ruled out, so the kept
        pairs stay about Σ L_q (plus ties) instead of everything below the first, loose cut. Runs when the
        kept pairs have doubled since the last pruning (amortised linear work)."""
        size = sum(len(part[0]) for part in self.pending)
        if size <= 2 * self._pruned_size + (1 << 16):
            return
        q, r, est = (np.concatenate(parts) for parts in zip(*self.pending))
        keep = (est <= self.tau[q]) | ((est >= self.lo[q]) & (est <= self.hi[q]))
        self.pending = [(q[keep], r[keep], est[keep])]
        self._pruned_size = int(keep.sum())

    def _tighten(self, q, est):
        order = np.lexsort((est, q))
        q, est = q[order], est[order]
        starts = _group_starts(q)
        rank = np.arange(len(q)) - np.maximum.accumulate(np.where(starts, np.arange(len(q)), 0))
        keep = rank < self.longest
        touched, slot = np.unique(q[keep], return_inverse=True)
        merged = np.full((len(touched), 2 * self.longest), np.inf, np.float32)
        merged[:, :self.longest] = self.best[touched]
        merged[slot, self.longest + rank[keep]] = est[keep]
        merged.sort(axis=1)
        self.best[touched] = merged[:, :self.longest]
        lengths = self.lengths[touched]
        cut = self.best[touched, np.maximum(lengths - 1, 0)].astype(np.float64) + 2 * self.delta[touched]
        cut = np.where(lengths > 0, exact.round_up(cut), -np.inf)
        self.tau[touched] = np.minimum(self.tau[touched], cut)

    def take(self):
        pending, self.pending = self.pending, []
        self._pruned_size = 0
        return pending


def rank_relevance(queries, query_labels, references=None, reference_labels=None, list_lengths=None,
                   max_rank=None, chunk_size=1024, block_size=8192, progress=None):
    """Exact rank of the nearest positive and relevance of the first L_q results per query.

    Args:
        queries: (Q, D) float32 embeddings.
        query_labels: (Q,) int64.
        references: a separate reference set (default: the queries, each
            query left out of its own ranking).
        reference_labels: labels of `references`.
        list_lengths: (Q,) number of ranked results whose relevance is needed
            (0 = none), clipped to the number of references.
        max_rank: ranks of the nearest positive at or beyond this are reported
            as `max_rank` (enough for Recall@K with K ≤ max_rank; 0 = ranks not
            needed; None = exact ranks).
        chunk_size: queries per block; block_size: references per block
            (both rounded up to a multiple of `TILE`).
        progress: optional callable `progress(done, total)` over the sweep.

    Returns:
        `RankedRelevance`.
    """
    same = references is None
    queries = np.asarray(queries, np.float32)
    query_labels = np.asarray(query_labels, np.int64)
    references = queries if same else np.asarray(references, np.float32)
    reference_labels = query_labels if same else np.asarray(reference_labels, np.int64)
    for name, points in (("queries", queries), ("references", references)):
        if points.ndim != 2 or not np.isfinite(points).all():
            raise ValueError(f"{name} must be a finite (n, d) array (no NaN or infinite values).")
    q_count, n = len(queries), len(references)
    chunk_size = _pad_to(max(1, min(int(chunk_size), q_count)), TILE)
    block_size = _pad_to(max(1, min(int(block_size), n)), TILE)
    max_rank = np.inf if max_rank is None else int(max_rank)
    available = n - int(same)
    lengths = np.zeros(q_count, np.int64) if list_lengths is None else np.asarray(list_lengths, np.int64)
    lengths = np.clip(lengths, 0, max(available, 0))

    mean = exact.centre(references)
    ref_side = _side(references, reference_labels, mean, _pad_to(n, block_size) + chunk_size + block_size)
    query_side = ref_side if same else _side(queries, query_labels, mean, _pad_to(q_count, chunk_size) + block_size)
    lengths = lengths[query_side.order]
    classes, counts = np.unique(reference_labels, return_counts=True)
    positives = np.zeros(q_count, np.int64)
    known = np.isin(query_side.labels, classes)
    positives[known] = counts[np.searchsorted(classes, query_side.labels[known])] - int(same)
    scale = exact.error_scale(queries.shape[1])
    delta = scale * (np.sqrt(query_side.sq) + np.sqrt(ref_side.sq.max())) ** 2

    t1, nearest, tau = _nearest_positives(query_side, ref_side, delta, lengths, same, chunk_size,
                                          tile=max(block_size, 2 * chunk_size))
    scored = positives > 0
    counting = scored & (max_rank > 0)
    lo = np.where(counting, exact.round_down(t1 - delta), -np.inf).astype(np.float32)
    hi = np.where(counting, exact.round_up(t1 + delta), -np.inf).astype(np.float32)
    tau32 = np.where(lengths > 0, exact.round_up(tau), -np.inf).astype(np.float32)

    symmetric = same and int(lengths.sum()) <= _SYMMETRIC_BLOCKS * chunk_size * block_size
    mode = "symmetric" if symmetric else ("exclude_self" if same else "cross")
    sweep = _Sweep(q_count, int(query_side.as_query.shape[0]), lo, hi, tau32, delta, lengths, max_rank)
    unused = tf.zeros([int(ref_side.as_reference.shape[0])])
    rank = np.full(q_count, -1, np.int64)
    relevance = np.zeros((q_count, sweep.longest), bool)
    context = dict(queries=query_side, refs=ref_side, t1=t1, nearest=nearest, delta=delta, lengths=lengths)

    def run_block(a, c0, threshold):
        # The last row chunk and column block shrink to a multiple of _SHAPE_STEP (few traced shapes).
        rows = min(chunk_size, _pad_to(q_count - a, _SHAPE_STEP))
        cols = min(block_size, _pad_to(n - c0, _SHAPE_STEP))
        found = _compiled_sweep_block(query_side.as_query, threshold, tf.constant(a, tf.int32),
                                      ref_side.as_reference, threshold if symmetric else unused,
                                      tf.constant(c0, tf.int32), rows, cols, mode)
        return [t.numpy() for t in found]

    chunks = list(range(0, q_count, chunk_size))
    # Two blocks in flight: one's matmul overlaps the other's filtering and the numpy bookkeeping. A block
    # may see a τ one block older (looser), which only adds candidates.
    with ThreadPoolExecutor(_BLOCKS_IN_FLIGHT) as pool:
        running = collections.deque()
        for step, a in enumerate(chunks):
            for c0 in range(a if symmetric else 0, n, block_size):
                running.append(pool.submit(run_block, a, c0, sweep.threshold))
                if len(running) >= _BLOCKS_IN_FLIGHT:
                    sweep.add(*running.popleft().result())
            if not symmetric:
                while running:
                    sweep.add(*running.popleft().result())
                finished = np.zeros(q_count, bool)
                finished[a:a + chunk_size] = True
                _resolve(sweep, finished, rank, relevance, **context)
            if progress is not None:
                progress(step + 1, len(chunks))
        while running:
            sweep.add(*running.popleft().result())
    if symmetric:
        _resolve(sweep, np.ones(q_count, bool), rank, relevance, **context)
    rank = np.where(scored, rank, -1)
    unsort = np.empty(q_count, np.int64)
    unsort[query_side.order] = np.arange(q_count)
    return RankedRelevance(rank[unsort], relevance[unsort], lengths[unsort], positives[unsort])


def _resolve(sweep, finished, rank, relevance, queries, refs, t1, nearest, delta, lengths):
    """Turns the candidate pairs of the `finished` queries (all their pairs are in the sweep) into exact
    ranks of the nearest positive and relevance lists."""
    pending = sweep.take()
    if pending:
        q, r, est = (np.concatenate(parts) for parts in zip(*pending))
        q, r = q.astype(np.int64), r.astype(np.int64)
    else:
        q = r = np.zeros(0, np.int64)
        est = np.zeros(0, np.float32)
    # Recall: exact comparison with the nearest positive, for other-class pairs in its band.
    relevant = queries.labels[q] == refs.labels[r]
    band = ~relevant & (est >= sweep.lo[q]) & (est <= sweep.hi[q])
    bq, br = q[band], r[band]
    bd = _exact(queries, refs, bq, br)
    closer = (bd < t1[bq]) | ((bd == t1[bq]) & (refs.order[br] < refs.order[nearest[bq]]))
    extra = np.bincount(bq[closer], minlength=len(rank))
    rank[finished] = np.minimum(sweep.below + extra, sweep.max_rank)[finished]
    # Ranked lists: order the candidates within the final cut τ.
    keep = est <= sweep.tau[q]
    q, r, est, relevant = q[keep], r[keep], est[keep].astype(np.float64), relevant[keep]
    order = np.lexsort((refs.order[r], est, q))
    q, r, est, relevant = q[order], r[order], est[order], relevant[order]
    new_group = _group_starts(q)
    new_group[1:] |= est[1:] - est[:-1] > 2 * delta[q[1:]]
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    mixed = np.zeros(len(q), bool)
    if len(q):
        mixed = (np.maximum.reduceat(relevant, starts) != np.minimum.reduceat(relevant, starts))[group]
    key = est.copy()
    key[mixed] = _exact(queries, refs, q[mixed], r[mixed])
    order = np.lexsort((refs.order[r], key, group))
    q, relevant = q[order], relevant[order]
    starts = _group_starts(q)
    position = np.arange(len(q)) - np.maximum.accumulate(np.where(starts, np.arange(len(q)), 0))
    inside = position < lengths[q]
    relevance[q[inside], position[inside]] = relevant[inside]
    short = np.flatnonzero(finished & (np.bincount(q[inside], minlength=len(lengths)) < lengths))
    if len(short):
        raise RuntimeError(f"internal error: {len(short)} queries got fewer ranked candidates than needed.")
