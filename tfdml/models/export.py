"""Export an embedding model (and optionally a retrieval index) as a SavedModel; load model files safely."""
import os
import zipfile

import keras
import numpy as np
import tensorflow as tf

from tfdml import distances
from tfdml.models.embedding_model import DEFAULT_TAP


#: What the exported signatures take (stored in the SavedModel as the string variable `expected_input`).
EXPECTED_INPUT = ("serving_default / serving_float_0_255 / retrieve / retrieve_float_0_255: float32 pixels in "
                  "[0, 255] (not [0, 1]; no mean/std normalisation, it happens inside), any size; serving_uint8 / "
                  "retrieve_uint8: uint8 pixels; serving_encoded / retrieve_encoded: encoded image file bytes "
                  "(JPEG, PNG, GIF, BMP, WebP), one string per image.")


class _EmbeddingServer(tf.Module):
    """tf.Module wrapping an embedder: images (any batch, any size) → L2-normalised embeddings,
    plus exact retrieval against an index when one is given."""

    def __init__(self, embedder, image_size, channels, index=None, k=10):
        super().__init__()
        self.embedder = embedder
        self.height, self.width = image_size
        self.channels = channels
        # Read by `evaluate.py` (input size of the exported model) — not an input of any signature.
        self.input_shape = tf.Variable([self.height, self.width, channels], dtype=tf.int32, trainable=False)
        self.expected_input = tf.Variable(EXPECTED_INPUT, trainable=False)
        self.index = index
        if index is not None:
            from tfdml.retrieval import search

            refs = index.searcher.references
            # The reference embeddings are stored once: the centred copy fl(x − μ) that the estimates use is
            # recomputed from them at call time (O(N·D), small beside the search's matmul).
            self.reference_embeddings = tf.Variable(refs.raw, trainable=False)
            self.reference_sq_norms = tf.Variable(refs.sq_norms, trainable=False)
            self.reference_mean = tf.Variable(refs.mean, trainable=False)
            self.reference_max_sq_norm = tf.Variable(refs.max_sq_norm, trainable=False)
            self.ids = tf.Variable(index.ids, trainable=False)
            labels = index.labels if index.labels is not None else np.full(len(index), -1, np.int64)
            self.labels = tf.Variable(labels, trainable=False)
            self.k, self.margin, self.block_size = int(k), index.margin, index.block_size

    def _embeddings(self, images):
        images = tf.cast(images, tf.float32)
        shape = tf.shape(images)
        same = tf.logical_and(tf.equal(shape[1], self.height), tf.equal(shape[2], self.width))
        images = tf.cond(same, lambda: images, lambda: tf.image.resize(images, (self.height, self.width)))
        return tf.cast(self.embedder(images, training=False), tf.float32)

    def _embed(self, images):
        return {"embeddings": distances.l2_normalize(self._embeddings(images))}

    def _references(self):
        from tfdml.retrieval import exact, search

        raw = tf.convert_to_tensor(self.reference_embeddings)
        centred, _ = exact.centred(raw, self.reference_mean)
        padding = self.reference_sq_norms.shape[0] - raw.shape[0]
        centred = tf.pad(centred, [[0, padding], [0, 0]])
        return search.References(raw, centred, tf.convert_to_tensor(self.reference_sq_norms),
                                 tf.convert_to_tensor(self.reference_mean),
                                 tf.convert_to_tensor(self.reference_max_sq_norm))

    def _search(self, embeddings):
        from tfdml.retrieval import search

        if self.index.normalize:
            embeddings = distances.l2_normalize(embeddings)
        # Tensors, not the variables (`_references`): module-level tf.functions of `search` would otherwise keep
        # a trace that captures this server's variables and fail for the next export in the same process.
        squared, idx = search.top_k(embeddings, self._references(), self.k, self.margin, self.block_size)
        return {"ids": tf.gather(self.ids, idx), "labels": tf.gather(self.labels, idx),
                "distances": tf.cast(tf.sqrt(squared), tf.float32), "indices": idx}

    def _retrieve(self, images):
        return self._search(self._embeddings(images))

    def _decode(self, encoded):
        """(N,) encoded image bytes → float32 (N, H, W, C) in [0, 255] at the model's input size."""
        def one(data):
            image = tf.io.decode_image(data, channels=self.channels, expand_animations=False)
            image.set_shape([None, None, self.channels])
            return tf.image.resize(tf.cast(image, tf.float32), (self.height, self.width))

        return tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([self.height, self.width, self.channels],
                                                                          tf.float32))

    def _embed_encoded(self, encoded):
        return self._embed(self._decode(encoded))

    def _retrieve_encoded(self, encoded):
        return self._retrieve(self._decode(encoded))

    def signatures(self):
        image = tf.TensorSpec([None, None, None, self.channels], tf.float32, name="images")
        image_u8 = tf.TensorSpec([None, None, None, self.channels], tf.uint8, name="images")
        encoded = tf.TensorSpec([None], tf.string, name="encoded")
        embed = tf.function(self._embed, input_signature=[image])
        signatures = {
            "serving_default": embed,
            "serving_float_0_255": embed,
            "serving_uint8": tf.function(self._embed, input_signature=[image_u8]),
            "serving_encoded": tf.function(self._embed_encoded, input_signature=[encoded]),
        }
        if self.index is not None:
            embeddings = tf.TensorSpec([None, self.index.dim], tf.float32, name="embeddings")
            retrieve = tf.function(self._retrieve, input_signature=[image])
            signatures.update({
                "retrieve": retrieve,
                "retrieve_float_0_255": retrieve,
                "retrieve_uint8": tf.function(self._retrieve, input_signature=[image_u8]),
                "retrieve_encoded": tf.function(self._retrieve_encoded, input_signature=[encoded]),
                "search": tf.function(self._search, input_signature=[embeddings]),
            })
        return signatures


def export(model, path, tap=DEFAULT_TAP, index=None, k=10):
    """Writes a SavedModel that maps raw images to embeddings and, with an index, to nearest neighbours.

    Signatures (any batch size; any spatial size, resized bilinearly to the
    model's input size when different; the channel count is the model's):

    - `serving_default` = `serving_float_0_255` (float32 pixels in [0, 255],
      not [0, 1]: images scaled to [0, 1] give wrong embeddings without an
      error), `serving_uint8` (uint8 pixels) and `serving_encoded` (`encoded`:
      a (N,) string tensor of image file bytes — JPEG, PNG, GIF, BMP, WebP —
      what a serving client has): `{"embeddings": (N, D) float32}`,
      L2-normalised;
    - with `index`: `retrieve` = `retrieve_float_0_255`, `retrieve_uint8`,
      `retrieve_encoded` and `search` (query embeddings): `{"ids", "labels",
      "distances", "indices"}`, each (N, k), the exact k nearest index entries
      (same search code as `tfdml.retrieval.Index.search`; labels are -1 for
      an index without labels).

    Pixel preprocessing happens inside. The loss's trainable state (proxies, β)
    is not part of the export. The input shape is stored as the variable
    `input_shape` ([height, width, channels]) and this description of the
    inputs as the string variable `expected_input`.

    Args:
        model: a `tfdml.models.EmbeddingModel` (its `embedder(tap)` is exported)
            or any Keras model taking raw images (its output is exported).
        path: output directory.
        tap: tap name of an `EmbeddingModel` ("fc", "pool", "fc2", ...).
        index: optional `tfdml.retrieval.Index` built from this embedder's
            embeddings, stored inside the SavedModel.
        k: number of neighbours returned by the retrieval signatures.

    Returns:
        `path`.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, got {type(model).__name__}.")
    embedder = model.embedder(tap) if hasattr(model, "embedder") else model
    height, width, channels = (int(v) for v in embedder.inputs[0].shape[1:4])
    if index is not None and int(embedder.outputs[0].shape[-1]) != index.dim:
        raise ValueError(f"index holds {index.dim}-dimensional embeddings but tap {tap!r} gives "
                         f"{int(embedder.outputs[0].shape[-1])}.")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    server = _EmbeddingServer(embedder, (height, width), channels, index, k)
    tf.saved_model.save(server, path, signatures=server.signatures())
    return path


def load_exported(path):
    """Loads a SavedModel written by `export`, with a clear error when it is missing or corrupt."""
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(f"{path!r} is not a SavedModel directory (no saved_model.pb).")
    try:
        return tf.saved_model.load(path)
    except Exception as error:  # truncated protobuf / variables: TF raises IndexError, DecodeError, ...
        raise ValueError(
            f"The SavedModel in {path!r} is corrupt or truncated ({type(error).__name__}: {error}); "
            "export it again with tfdml.export(model, path) from the run's final.keras.") from error


def load_keras_model(path):
    """`keras.models.load_model(path)` with clear errors for a missing, truncated or corrupt file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Model file not found: {path!r}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is corrupt or truncated (not a valid .keras zip archive, "
                         f"{os.path.getsize(path)} bytes); use another checkpoint (e.g. final.keras) or train again.")
    import tfdml  # noqa: F401  (registers the Keras classes stored in .keras files)

    try:
        return keras.models.load_model(path)
    except Exception as error:
        raise ValueError(f"{path!r} could not be loaded ({type(error).__name__}: {error}); it may be corrupt "
                         "or truncated: use another checkpoint (e.g. final.keras) or train again.") from error
