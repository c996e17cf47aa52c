"""Batch samplers (index generators) — EE official sampler and Roth et al. §3.2.

Every sampler yields int32 index arrays of length `batch_size`, grouped by class
in consecutive order (Embedding Expansion's "consecutive" pairs follow batch
order). All are infinite and deterministic for a given seed.

- "m_per_class" (official EE sampler): the classes are shuffled into an order
  that is consumed P = batch_size / M classes per batch (reshuffled when used
  up, so every class appears once per pass); each class contributes M images
  drawn without replacement, or with replacement if it has fewer than M.
- "class_random": each batch draws P distinct classes uniformly at random,
  independently of other batches, and M images per class with replacement.
- "full_random" (SPC-R-like random sampling): B images drawn uniformly from a
  shuffled pass over the dataset (without replacement within a pass), then
  ordered by class within the batch; the number of samples per class varies.
"""
import numpy as np

SAMPLERS = ("m_per_class", "class_random", "full_random")


def check_sampler_arguments(sampler, batch_size, samples_per_class, num_classes):
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler={sampler!r}; expected one of {SAMPLERS}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if sampler != "full_random":
        if samples_per_class < 1 or batch_size % samples_per_class:
            raise ValueError(
                f"batch_size ({batch_size}) must be divisible by samples_per_class ({samples_per_class}).")
        if batch_size // samples_per_class > num_classes:
            raise ValueError(
                f"batch_size / samples_per_class = {batch_size // samples_per_class} classes per batch, but the "
                f"split has only {num_classes} classes.")


def batch_indices(labels, sampler="m_per_class", batch_size=128, samples_per_class=32, seed=0):
    """Infinite generator of index batches (see the module docstring).

    Args:
        labels: (N,) int class ids of the split.
        sampler: one of `SAMPLERS`.
        batch_size: B.
        samples_per_class: M (ignored by "full_random").
        seed: random seed.

    Yields:
        int32 arrays of shape (B,).
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    check_sampler_arguments(sampler, batch_size, samples_per_class, len(classes))
    rng = np.random.default_rng(seed)
    members = {c: np.flatnonzero(labels == c) for c in classes}
    per_batch = batch_size // samples_per_class if sampler != "full_random" else 0

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
