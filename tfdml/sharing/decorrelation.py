"""Decorrelation of the two embeddings (Milbich et al., "Sharing Matters", eq. 2).

A regressor p: ℝ^{D*} → ℝ^D predicts the class embedding φ from the shared
embedding φ*; their correlation

    r(φ, φ*) = 1/B Σ_i 1/D Σ_s (φ_{i,s} · p(φ*_i)_s)²

is maximised by p and, through a gradient-reversal op R between the heads and
the regressor, minimised by the heads and the backbone (eq. 3:
L = L(T; φ) + L(T*; φ*) − γ · r(R(φ), R(φ*))).
"""
import keras
import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_int


@tf.custom_gradient
def _reverse(x):
    def gradient(upstream):
        return -upstream

    return tf.identity(x), gradient


def reverse_gradient(x):
    """Gradient reversal R: the identity forward, −1 × the gradient backward (Ganin & Lempitsky 2015)."""
    return _reverse(tf.convert_to_tensor(x))


@keras.saving.register_keras_serializable(package="tfdml")
class GradientReversal(keras.layers.Layer):
    """`reverse_gradient` as a layer: output = input (dtype kept), gradient = −gradient."""

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def call(self, inputs):
        """Returns `inputs` unchanged; the gradient flows back negated."""
        return reverse_gradient(inputs)


@keras.saving.register_keras_serializable(package="tfdml")
class DecorrelationRegressor(keras.layers.Layer):
    """The regressor p of eq. 2: Dense(`units`) → ReLU → Dense(`output_dim`), then (by default) L2
    normalisation.

    The paper defines p only as a regressor from φ* to φ; its hidden width and
    the final L2 normalisation are tfdml's choices. The normalisation bounds r:
    p maximises r, and an unnormalised output can raise it without limit by
    growing its scale (`normalize=False` gives the raw output).

    The output is float32 (float64 for a float64 layer), also under mixed precision.

    Args:
        output_dim: D, the width of the class embedding φ it predicts.
        units: hidden width (tfdml's choice: 512).
        normalize: L2-normalise the output (tfdml's choice, default True).
    """

    def __init__(self, output_dim, units=512, normalize=True, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = check_int(output_dim, "output_dim", minimum=1)
        self.units = check_int(units, "units", minimum=1)
        self.normalize = bool(normalize)
        self.hidden = keras.layers.Dense(self.units, activation="relu", name="hidden", dtype=self.dtype_policy)
        self.projection = keras.layers.Dense(self.output_dim, name="projection", dtype=self.dtype_policy)

    def build(self, input_shape):
        """Builds the hidden and projection layers for `input_shape`."""
        self.hidden.build(input_shape)
        self.projection.build((*input_shape[:-1], self.units))
        self.built = True

    def call(self, inputs):
        """The regression of `inputs`, in float32 (float64 when computed in float64), L2-normalised when
        `normalize`."""
        outputs = self.projection(self.hidden(inputs))
        outputs = tf.cast(outputs, tf.float64 if outputs.dtype == tf.float64 else tf.float32)
        return distances.l2_normalize(outputs) if self.normalize else outputs

    def compute_output_shape(self, input_shape):
        """The input shape with `output_dim` features."""
        return (*input_shape[:-1], self.output_dim)

    def get_config(self):
        """Config of this layer: `output_dim`, `units` and `normalize` (Keras serialisation)."""
        return {**super().get_config(), "output_dim": self.output_dim, "units": self.units,
                "normalize": self.normalize}


def decorrelation(class_embeddings, predictions):
    """r = 1/B Σ_i 1/D Σ_s (φ_{i,s} · p_{i,s})² (eq. 2), in float32 (float64 inputs stay float64).

    Args:
        class_embeddings: (B, D) φ.
        predictions: (B, D) p(φ*), the regressor's output for the same samples.

    Returns:
        Scalar r (0 for an empty batch).
    """
    phi = tf.convert_to_tensor(class_embeddings)
    dtype = tf.float64 if phi.dtype == tf.float64 else tf.float32
    product = tf.cast(phi, dtype) * tf.cast(predictions, dtype)
    per_sample = tf.reduce_mean(tf.square(product), axis=1)
    count = tf.cast(tf.shape(per_sample)[0], dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(per_sample), count)
