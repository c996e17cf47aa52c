"""P2SGrad (Zhang et al., CVPR 2019)."""
import tensorflow as tf

from tfdml.checks import check_choice
from tfdml.losses.proxies import ProxyLoss
from tfdml.losses.registry import register

FORMS = ("paper", "mse")


@register("p2sgrad")
class P2SGradLoss(ProxyLoss):
    """The loss whose gradient is P2SGrad (Zhang et al., "P2SGrad: Refined Gradients for
    Optimizing Deep Face Models", CVPR 2019, eq. 11).

    P2SGrad replaces the classification probabilities in the gradient of cosine softmax losses
    by the cosines themselves: for an embedding x with label y and cos θ_c = x̂ᵀŵ_c (L2-normalised
    embedding and class weights), the gradient of eq. 11 is Σ_c (cos θ_c − [c = y]) ∇cos θ_c,
    with respect to x and to each w_c. It is the gradient of

        ℓ = ½ Σ_c (cos θ_c − [c = y])²,

    and loss = mean of ℓ over the batch (the paper gives the gradient of one sample; the batch
    averages it like the other softmax losses). No hyper-parameters. The gradients with respect
    to both x and w_c pass through the L2 normalisations, ∇_x cos θ_c = (ŵ_c − cos θ_c x̂)/‖x‖
    as in the paper.

    `form="mse"` is pytorch-metric-learning's `P2SGradLoss`: the mean squared error over all
    B·C entries, mean_{i,c} (cos θ_ic − [c = y_i])² = (2/C)·(the paper form); it equals PML's
    loss in value and in the gradient with respect to the embeddings. (PML renormalises its weights in
    place before each call instead of differentiating through the normalisation, so its weight
    gradient is not projected onto the sphere.)

    The class weights are loss state (`state_layer`, shape (num_classes, D)), initialised
    N(0, 1/D) and normalised in the loss. No Embedding Expansion.

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        form: "paper" (½ Σ_c, mean over the batch) or "mse" (PML: mean over the B·C entries).
        lr_multiplier: learning-rate multiplier of the class weights.
        seed: seed of the weight initialisation.

    Example (x = (1, 1) has cos θ = 1/√2 with both class weights, and label 0:
    ½((1/√2 − 1)² + (1/√2)²) = 1 − 1/√2):

    >>> loss = tfdml.losses.P2SGradLoss(num_classes=2)
    >>> loss.build_state(2).assign_value([[1.0, 0.0], [0.0, 3.0]])
    >>> round(float(loss([0], [[1.0, 1.0]])), 4)
    0.2929
    """

    config_args = ("num_classes", "form", "lr_multiplier", "seed")

    def __init__(self, num_classes, form="paper", lr_multiplier=1.0, seed=None, name="p2sgrad_loss", **kwargs):
        super().__init__(num_classes, 1, lr_multiplier, seed, name=name, **kwargs)
        self.form = check_choice(form, "form", FORMS)

    def proxy_loss(self, labels, unit_embeddings, unit_proxies):
        """Squared error between the cosines and the one-hot labels (`form`: mean or half the per-sample sum)."""
        cosine = tf.clip_by_value(tf.matmul(unit_embeddings, unit_proxies, transpose_b=True), -1.0, 1.0)
        errors = tf.square(cosine - tf.one_hot(labels, self.num_classes, dtype=cosine.dtype))
        if self.form == "mse":
            return tf.reduce_mean(errors)
        return 0.5 * tf.reduce_mean(tf.reduce_sum(errors, axis=1))
