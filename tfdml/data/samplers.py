"""Label-based batch samplers (index generators) — EE official sampler and Roth et al. §3.2.

Every sampler yields int32 index arrays of length `batch_size`, grouped by class
in consecutive order (Embedding Expansion's "consecutive" pairs follow batch
order). All are infinite and deterministic for a given seed.

- "m_per_class" (official EE sampler): the classes are shuffled into an order
  that is consumed P = batch_size / M classes per batch (reshuffled when used
  up, so every class appears once per pass); each class contributes M images
  drawn without replacement, or with replacement if it has fewer than M.
- "class_random" (Roth et al.'s SPC-M): each batch draws P distinct classes
  uniformly at random, independently of other batches, and M images per class
  with replacement.
- "spc_r" (Roth et al.'s SPC-R, exact): B − 1 draws of a uniform class followed
  by a uniform image of that class, with replacement (as in Roth et al.'s
  code); the B-th image is a uniform *other* image of the class of a uniformly
  chosen earlier draw whose class has at least two images, so every batch holds
  at least one positive pair (if no earlier draw qualifies, the batch is drawn
  again). Classes are equally likely whatever their size.
- "full_random" (uniform over images, not SPC-R): B images drawn from a shuffled
  pass over the dataset (without replacement within a pass). A class appears
  in proportion to its size and a batch may hold no positive pair.

Both random samplers order the batch by class; the number of samples per class
varies. The embedded samplers "gc", "ddm" and "frd" read a memory bank of
embeddings: see `tfdml.data.embedded_samplers.EmbeddedSampler`.
"""
import numpy as np

SAMPLERS = ("m_per_class", "class_random", "spc_r", "full_random")
"""Batch samplers that need no embeddings (Roth et al. 2020, §3.2): `m_per_class`, `class_random` (SPC-n), `spc_r` (SPC-R), `full_random`."""
EMBEDDED_SAMPLERS = ("gc", "ddm", "frd")
"""Batch samplers that read a `MemoryBank` of training embeddings (Roth et al. 2020, §3.2): greedy coreset `gc`, distance-distribution matching `ddm`, Fréchet distance `frd`."""
#: Every sampler name a config may use.
SAMPLER_NAMES = SAMPLERS + EMBEDDED_SAMPLERS
_FREE_CLASS_COUNT = ("spc_r", "full_random")  # samplers that ignore samples_per_class


class ClassMembers:
    """Image indices of every class, for vectorised per-class draws.

    Args:
        labels: (N,) integer class ids (any values).
    """

    def __init__(self, labels):
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}.")
        self.labels = labels
        self.classes, self.class_ids = np.unique(labels, return_inverse=True)
        self.order = np.argsort(self.class_ids, kind="stable")
        self.sizes = np.bincount(self.class_ids)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])

    @property
    def num_classes(self):
        """Number of classes."""
        return len(self.classes)

    def of(self, class_id):
        """Indices of the images of class number `class_id` (0-based position in `classes`)."""
        return self.order[self.starts[class_id]:self.starts[class_id] + self.sizes[class_id]]

    def draw(self, class_ids, counts, rng, exclude=None):
        """Images of several classes at once, vectorised.

        Request i asks for `counts[i]` images of class number `class_ids[i]`, other
        than image `exclude[i]` if given: drawn without replacement when the class
        has enough, else with replacement (the excluded image itself if it is its
        class's only one).

        Returns:
            int64 array of Σ counts image indices, request by request.
        """
        class_ids = np.asarray(class_ids, np.int64)
        counts = np.broadcast_to(np.asarray(counts, np.int64), class_ids.shape)
        sizes = self.sizes[class_ids]
        owner = np.repeat(np.arange(len(class_ids)), sizes)
        group_start = np.cumsum(sizes) - sizes
        rank = np.arange(len(owner)) - group_start[owner]
        images = self.order[self.starts[class_ids][owner] + rank]
        keys = rng.random(len(owner))
        available = sizes.copy()
        if exclude is not None:
            keys[images == np.asarray(exclude)[owner]] = np.inf  # sorts last, never taken below
            available -= 1
        shuffled = images[np.lexsort((keys, owner))]  # each request's images in random order
        out = np.empty(int(counts.sum()), np.int64)
        ends = np.cumsum(counts)
        full = counts <= available
        take = full[owner] & (rank < counts[owner])
        out[np.repeat(full, counts)] = shuffled[take]
        for i in np.flatnonzero(~full):  # short classes: with replacement from the available images
            pool = shuffled[group_start[i]:group_start[i] + max(available[i], 1)]
            out[ends[i] - counts[i]:ends[i]] = pool[rng.integers(len(pool), size=counts[i])]
        return out


def check_sampler_arguments(sampler, batch_size, samples_per_class, num_classes):
    """Raises `ValueError` for an unknown `sampler` name (or one that needs a memory bank), a
    `batch_size` below 1 (2 for "spc_r") or batch sizes the split's classes cannot fill."""
    if sampler in EMBEDDED_SAMPLERS:
        raise ValueError(
            f"sampler={sampler!r} chooses batches from a memory bank of embeddings: pass "
            f"tfdml.data.EmbeddedSampler({sampler!r}, bank) instead of the name.")
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler={sampler!r}; expected one of {SAMPLERS + EMBEDDED_SAMPLERS}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if sampler == "spc_r" and batch_size < 2:
        raise ValueError(f"sampler='spc_r' needs batch_size >= 2 to hold a positive pair, got {batch_size}.")
    if sampler not in _FREE_CLASS_COUNT:
        check_classes_per_batch(batch_size, samples_per_class, num_classes)


def check_classes_per_batch(batch_size, samples_per_class, num_classes):
    """Raises `ValueError` unless `batch_size` is a multiple of `samples_per_class` and the split has
    the `batch_size / samples_per_class` classes a batch needs."""
    if samples_per_class < 1 or batch_size % samples_per_class:
        raise ValueError(
            f"batch_size ({batch_size}) must be divisible by samples_per_class ({samples_per_class}).")
    if batch_size // samples_per_class > num_classes:
        raise ValueError(
            f"batch_size / samples_per_class = {batch_size // samples_per_class} classes per batch, but the "
            f"split has only {num_classes} classes.")


def _check_spc_r_labels(labels):
    if not np.any(np.unique(labels, return_counts=True)[1] >= 2):
        raise ValueError("sampler='spc_r' needs at least one class with two or more images.")


def _spc_r_batches(members, batch_size, rng):
    while True:
        classes = rng.integers(members.num_classes, size=batch_size - 1)
        offsets = rng.integers(members.sizes[classes])
        eligible = np.flatnonzero(members.sizes[classes] >= 2)
        if len(eligible) == 0:
            continue
        partner = eligible[rng.integers(len(eligible))]
        c = classes[partner]
        other = rng.integers(members.sizes[c] - 1)
        other += other >= offsets[partner]  # skip the partner's own position
        chosen = members.order[members.starts[np.append(classes, c)] + np.append(offsets, other)]
        yield chosen[np.argsort(members.class_ids[chosen], kind="stable")].astype(np.int32)


def batch_indices(labels, sampler="m_per_class", batch_size=128, samples_per_class=32, seed=0):
    """Infinite generator of index batches (see the module docstring).

    Args:
        labels: (N,) int class ids of the split.
        sampler: one of `SAMPLERS`.
        batch_size: B.
        samples_per_class: M (ignored by "spc_r" and "full_random").
        seed: random seed.

    Yields:
        int32 arrays of shape (B,).
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    check_sampler_arguments(sampler, batch_size, samples_per_class, len(classes))
    rng = np.random.default_rng(seed)
    if sampler == "spc_r":
        _check_spc_r_labels(labels)
        yield from _spc_r_batches(ClassMembers(labels), batch_size, rng)
        return
    grouped = ClassMembers(labels)  # classes in the same sorted order as `classes`
    members = {c: grouped.of(i) for i, c in enumerate(classes)}
    per_batch = batch_size // samples_per_class if sampler not in _FREE_CLASS_COUNT else 0

    def draw(c, m, replace_if_short):
        pool = members[c]
        replace = True if not replace_if_short else len(pool) < m
        return rng.choice(pool, size=m, replace=replace)

    if sampler == "full_random":
        order, position = rng.permutation(len(labels)), 0
        while True:
            if position + batch_size > len(order):
                order, position = rng.permutation(len(labels)), 0
            chosen = order[position:position + batch_size]
            position += batch_size
            yield chosen[np.argsort(labels[chosen], kind="stable")].astype(np.int32)
    queue = []
    while True:
        if sampler == "class_random":
            chosen = rng.choice(classes, size=per_batch, replace=False)
        else:
            while len(queue) < per_batch:
                queue.extend(rng.permutation(classes).tolist())
            chosen, queue = queue[:per_batch], queue[per_batch:]
            if len(set(chosen)) < per_batch:  # a class repeated across a reshuffle boundary
                chosen = list(dict.fromkeys(chosen))
                extra = [c for c in rng.permutation(classes) if c not in chosen][: per_batch - len(chosen)]
                chosen += extra
        yield np.concatenate(
            [draw(c, samples_per_class, sampler == "m_per_class") for c in chosen]).astype(np.int32)


def index_batch_source(labels, sampler="m_per_class", batch_size=128, samples_per_class=32, seed=0):
    """Validates the sampler settings now and returns a zero-argument callable that
    starts a fresh infinite index-batch generator (for `tf.data.Dataset.from_generator`).

    Args:
        labels: (N,) int class ids of the split.
        sampler: a `SAMPLERS` name, or a sampler object with `check(labels,
            batch_size, samples_per_class)` and `batches(labels, batch_size,
            samples_per_class, seed)` such as `tfdml.data.EmbeddedSampler`.
        batch_size, samples_per_class, seed: as in `batch_indices`.
    """
    labels = np.asarray(labels)
    if isinstance(sampler, str):
        check_sampler_arguments(sampler, batch_size, samples_per_class, len(np.unique(labels)))
        if sampler == "spc_r":
            _check_spc_r_labels(labels)
        return lambda: batch_indices(labels, sampler, batch_size, samples_per_class, seed)
    sampler.check(labels, batch_size, samples_per_class)
    return lambda: sampler.batches(labels, batch_size, samples_per_class, seed)
