"""Export an embedding model as a TensorFlow SavedModel for serving."""
import keras
import tensorflow as tf


class _EmbeddingServer(tf.Module):
    """tf.Module wrapping an embedder: images (any batch, any size, the model's channels) → L2-normalised
    embeddings."""

    def __init__(self, embedder, image_size, channels=3):
        super().__init__()
        self.embedder = embedder
        self.height, self.width = image_size
        self.serve_float = tf.function(self._embed, input_signature=[
            tf.TensorSpec([None, None, None, channels], tf.float32, name="images")])
        self.serve_uint8 = tf.function(self._embed, input_signature=[
            tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")])

    def _embed(self, images):
        images = tf.cast(images, tf.float32)
        shape = tf.shape(images)
        same = tf.logical_and(tf.equal(shape[1], self.height), tf.equal(shape[2], self.width))
        images = tf.cond(same, lambda: images, lambda: tf.image.resize(images, (self.height, self.width)))
        embeddings = tf.cast(self.embedder(images, training=False), tf.float32)
        return {"embeddings": tf.math.l2_normalize(embeddings, axis=-1)}


def export(model, path, tap="fc"):
    """Writes a SavedModel that maps raw images to L2-normalised embeddings.

    Signatures: `serving_default` takes float32 images in [0, 255], and
    `serving_uint8` takes uint8 images; both accept any batch size and any
    spatial size (resized bilinearly to the model's input size when different),
    with the model's channel count (3, or 1 for a gray model), and return
    `{"embeddings": (N, D) float32}`. Pixel preprocessing happens
    inside. The loss's trainable state (proxies, β) is not part of the export.

    Args:
        model: a `tfdml.models.EmbeddingModel` (its `embedder(tap)` is exported)
            or any Keras model taking raw images (its output is exported).
        path: output directory.
        tap: tap name of an `EmbeddingModel` ("fc", "pool", "fc2", ...).

    Returns:
        `path`.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, got {type(model).__name__}.")
    embedder = model.embedder(tap) if hasattr(model, "embedder") else model
    height, width, channels = (int(v) for v in embedder.inputs[0].shape[1:4])
    server = _EmbeddingServer(embedder, (height, width), channels)
    tf.saved_model.save(
        server, path,
        signatures={"serving_default": server.serve_float, "serving_uint8": server.serve_uint8},
    )
    return path
