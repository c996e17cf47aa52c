"""Retrieval examples as images for TensorBoard: fixed queries and their top-k, bordered by class.

`RetrievalExamples` picks a few fixed query images of a split once; each `log`
call (every evaluation) searches the rest of the split with the current
embeddings (leave-one-out, exact) and writes one `tf.summary.image` per tap:
a row per query — the query (grey border), then its k nearest neighbours with a
green border when they share the query's class and a red one otherwise.
"""
import numpy as np
import tensorflow as tf

from tfdml.analysis.projector import sample_indices, thumbnail

QUERY_COLOUR = (160, 160, 160)
SAME_COLOUR = (0, 200, 0)
OTHER_COLOUR = (220, 0, 0)


def retrieval_grid(query_tiles, neighbour_tiles, same_class, border=3):
    """One uint8 image: per query a row of its tile and its neighbours' tiles, each framed.

    Args:
        query_tiles: (Q, s, s, 3) uint8.
        neighbour_tiles: (Q, k, s, s, 3) uint8.
        same_class: (Q, k) bool — green frames where true, red where false.
        border: frame width in pixels.

    Returns:
        (Q·(s + 2·border), (k + 1)·(s + 2·border), 3) uint8 array.
    """
    query_tiles, neighbour_tiles = np.asarray(query_tiles, np.uint8), np.asarray(neighbour_tiles, np.uint8)
    q, k, side = neighbour_tiles.shape[0], neighbour_tiles.shape[1], neighbour_tiles.shape[2]
    cell = side + 2 * border
    grid = np.zeros((q * cell, (k + 1) * cell, 3), np.uint8)
    for row in range(q):
        tiles = [(query_tiles[row], QUERY_COLOUR)] + [
            (neighbour_tiles[row, j], SAME_COLOUR if same_class[row, j] else OTHER_COLOUR) for j in range(k)]
        for column, (tile, colour) in enumerate(tiles):
            top, left = row * cell, column * cell
            grid[top:top + cell, left:left + cell] = colour
            grid[top + border:top + border + side, left + border:left + border + side] = tile
    return grid


class RetrievalExamples:
    """Logs a grid of fixed queries and their top-k neighbours to TensorBoard at each evaluation.

    Args:
        split: `tfdml.data.Split` whose images are embedded in index order (the evaluation split).
        log_dir: TensorBoard log directory of the image summaries.
        queries: number of fixed queries (uniform sample, `seed`).
        k: neighbours shown per query.
        tile: thumbnail side in pixels.
        seed: query sample seed.
    """

    def __init__(self, split, log_dir, queries=6, k=5, tile=64, seed=0):
        for name, value in (("queries", queries), ("k", k), ("tile", tile)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if split.num_images < 2:
            raise ValueError(f"The split has {split.num_images} image(s); retrieval examples need at least 2.")
        self.split, self.log_dir, self.k, self.tile = split, log_dir, int(k), int(tile)
        self.queries = sample_indices(split.num_images, queries, seed)
        self._load = split.image_loader()
        self._tiles = {}
        self._writer = None

    def _thumbnail(self, index):
        if index not in self._tiles:
            self._tiles[index] = thumbnail(self._load(tf.constant(int(index), tf.int64)), self.tile)
        return self._tiles[index]

    def neighbours(self, embeddings, labels):
        """(neighbour indices (Q, k), same-class flags (Q, k)) of the fixed queries, leave-one-out, exact."""
        from tfdml.retrieval.search import Searcher

        embeddings, labels = np.asarray(embeddings, np.float32), np.asarray(labels)
        if len(embeddings) != self.split.num_images or len(labels) != len(embeddings):
            raise ValueError(f"embeddings and labels must cover the {self.split.num_images} images of the split in "
                             f"order, got {len(embeddings)} embeddings and {len(labels)} labels.")
        _, idx = Searcher(embeddings)(embeddings[self.queries], self.k, exclude=self.queries)
        return idx, labels[idx] == labels[self.queries][:, None]

    def grid(self, embeddings, labels):
        """The uint8 grid image for these embeddings (`retrieval_grid`)."""
        idx, same = self.neighbours(embeddings, labels)
        queries = np.stack([self._thumbnail(i) for i in self.queries])
        neighbours = np.stack([[self._thumbnail(i) for i in row] for row in idx])
        return retrieval_grid(queries, neighbours, same)

    def log(self, name, embeddings, labels, step):
        """Writes the grid as the image summary `retrieval/<name>` at `step`; returns the grid."""
        grid = self.grid(embeddings, labels)
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.image(f"retrieval/{name}", grid[None], step=int(step),
                             description=f"{len(self.queries)} fixed queries (grey) and their {self.k} nearest "
                                         "neighbours: green = same class, red = another class")
        self._writer.flush()
        return grid
