"""Manifold loss (Aziere & Todorovic, CVPR 2019)."""
import math

import tensorflow as tf

from tfdml import distances
from tfdml.checks import check_number
from tfdml.losses.ops import masked_logsumexp
from tfdml.losses.proxies import ProxyLoss
from tfdml.losses.registry import register


@register("manifold")
class ManifoldLoss(ProxyLoss):
    r"""Manifold loss: an N-pair-style loss on random-walk manifold similarities
    between the batch and class proxies (Aziere & Todorovic, "Ensemble Deep
    Manifold Similarity Learning using Hard Proxies", CVPR 2019).

    The paper could not be read offline (its equation numbers are not
    checked), so the computation follows pytorch-metric-learning's
    `ManifoldLoss` (PML 2.9), whose tests check it against the paper authors'
    code, and PML's documented equations.

    Graph. The B L2-normalised embeddings x̂_i and the C = `num_classes`
    L2-normalised proxies p̂_k (one per class) are the n = B + C nodes z_a of a
    graph with Gaussian-kernel weights on the cosine similarity (T =
    `temperature`):

        S_ab = exp(max(ẑ_aᵀẑ_b, 0) / T) for a ≠ b,   S_aa = 0,
        S̄ = D^{-1/2} S D^{-1/2},   D = diag(Σ_b S_ab).

    Manifold similarity. The random walk F ← α S̄ F + (1 − α) I converges to
    the closed form (α = `alpha`)

        F = (1 − α) (I − α S̄)^{-1}            (n × n, symmetric).

    With c(i) the class (proxy) of embedding i, F_ik its manifold similarity to
    proxy k (row i, column B + k), cos(F_i, F_k) the cosine between the rows of
    F of embedding i and of proxy k (all n entries), and m = `margin`:

        v_ik = F_ik − F_ic(i) + m,    u_ik = cos(F_i, F_k) − cos(F_i, F_c(i)) + m,

        L_int = 1/B Σ_i log(1 + Σ_{k ≠ c(i), v_ik ≥ 0} e^{v_ik})
        L_ctx = 1/B Σ_i log(1 + Σ_{k ≠ c(i), u_ik ≥ 0} e^{u_ik})

        loss = L_int + λ_C · L_ctx

    (λ_C = `lambda_c`; `lambda_c=math.inf` gives L_ctx alone, `lambda_c=0`
    L_int alone). Only the violating terms (v, u ≥ 0) enter the sums; an
    embedding without one contributes log 1 = 0; with a single proxy
    (`num_classes=1`) there is no term and the loss is 0 with a zero
    gradient. The gradient flows through S,
    F (the matrix inverse) and both the embeddings and the proxies.

    Defaults are PML's: α = 0.8, m = 5e-4, λ_C = 1 and T = 0.5 (PML's kernel
    divisor). The paper authors' released code (quoted in PML's tests) uses
    T = 0.05 and no margin: `temperature=0.05, margin=0.0`. Differences from
    PML 2.9, which computes the same equations: labels name the proxy of each
    embedding (PML takes this assignment as `indices_tuple` and, without it,
    assigns proxies at random, ignoring labels — not offered here: map classes
    to meta-classes yourself for the paper's ensemble of random partitions);
    the inverse is computed in the compute dtype (PML inverts in float32);
    `lambda_c=math.inf` drops L_int (PML multiplies L_ctx by ∞). The paper's
    "hard proxy" estimation is not part of this loss: the proxies are plain
    trainable state (see `tfdml.losses.ProxyLoss`). O((B + C)²) memory and an
    O((B + C)³) inverse per call. No Embedding Expansion.

    Args:
        num_classes: C, number of proxies (labels in [0, C)).
        lambda_c: λ_C ≥ 0, weight of the context loss (`math.inf`: context
            loss only).
        alpha: α in (0, 1), the random walk's propagation weight.
        margin: m.
        temperature: T > 0, divisor of the cosine in the Gaussian kernel.
        lr_multiplier: learning-rate multiplier of the proxies.
        seed: seed of the proxy initialisation.

    Returns:
        The scalar loss (from calling the loss on `(labels, embeddings)`).

    Example (one embedding of class 0 orthogonal to both proxies, which are
    orthogonal to each other: every S_ab = e⁰ = 1, so with α = ½ the walk is
    symmetric, F = ½ (I − ¼(J − I))^{-1} has 0.6 on its diagonal and 0.2 off it,
    and both v and u reduce to the margin m = ½):

    >>> loss = tfdml.losses.ManifoldLoss(num_classes=2, alpha=0.5, margin=0.5)
    >>> loss.build_state(3).assign_value([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> round(float(loss([0], [[0.0, 0.0, 2.0]])), 4)  # (1 + λ_C)·log(1 + e^{½})
    1.9482
    """

    config_args = ("num_classes", "lambda_c", "alpha", "margin", "temperature", "lr_multiplier", "seed")

    def __init__(self, num_classes, lambda_c=1.0, alpha=0.8, margin=5e-4, temperature=0.5, lr_multiplier=1.0,
                 seed=None, name="manifold_loss", **kwargs):
        super().__init__(num_classes, 1, lr_multiplier, seed, name=name, **kwargs)
        self.lambda_c = check_number(lambda_c, "lambda_c", minimum=0.0)
        self.alpha = check_number(alpha, "alpha", greater_than=0.0, less_than=1.0)
        self.margin = check_number(margin, "margin")
        self.temperature = check_number(temperature, "temperature", greater_than=0.0)

    def manifold_similarities(self, unit_embeddings, unit_proxies):
        """F = (1 − α)(I − α S̄)^{-1} of the graph of embeddings then proxies ((B + C) × (B + C)).

        Non-finite cosines (a NaN embedding) count as 0 here, so the inverse always exists (the loss
        itself is NaN then, see `MetricLoss`)."""
        nodes = tf.concat([unit_embeddings, unit_proxies], axis=0)
        cosine = tf.matmul(nodes, nodes, transpose_b=True)
        cosine = tf.where(tf.math.is_finite(cosine), cosine, tf.zeros_like(cosine))
        n = tf.shape(nodes)[0]
        off_diagonal = tf.logical_not(tf.eye(n, dtype=tf.bool))
        kernel = tf.where(off_diagonal, tf.exp(tf.maximum(cosine, 0.0) / self.temperature), tf.zeros_like(cosine))
        inverse_sqrt_degree = tf.math.rsqrt(tf.reduce_sum(kernel, axis=1))  # every degree ≥ n − 1 ≥ 1
        walk = inverse_sqrt_degree[:, None] * kernel * inverse_sqrt_degree[None, :]
        identity = tf.eye(n, dtype=walk.dtype)
        # I − αS̄ is symmetric positive definite (eigenvalues in [1 − α, 1 + α]).
        return (1.0 - self.alpha) * tf.linalg.inv(identity - self.alpha * walk)

    def _violations(self, similarities, labels):
        """1/B Σ_i log(1 + Σ_{k≠c(i), v_ik ≥ 0} e^{v_ik}), v_ik = similarities_ik − similarities_ic(i) + m."""
        own = tf.one_hot(labels, self.num_classes, on_value=True, off_value=False)
        target = tf.gather(similarities, labels, axis=1, batch_dims=1)
        values = similarities - target[:, None] + self.margin
        active = tf.logical_and(tf.logical_not(own), values >= 0.0)
        # log(1 + Σ exp(v)) = softplus(logsumexp(v)); no active term: softplus(−1e4) = 0.
        return tf.reduce_mean(tf.nn.softplus(masked_logsumexp(values, active, axis=1)))

    def proxy_loss(self, labels, unit_embeddings, unit_proxies):
        """The N-pair-style violations of the manifold similarities and, weighted by `lambda_c`, of their context
        similarities."""
        rows = tf.shape(unit_embeddings)[0]
        manifold = self.manifold_similarities(unit_embeddings, unit_proxies)
        loss = tf.zeros([], manifold.dtype)
        if self.lambda_c != math.inf:
            loss += self._violations(manifold[:rows, rows:], labels)
        if self.lambda_c > 0:
            unit_rows = distances.l2_normalize(manifold)  # rows of F are positive: norm ≥ (1 − α)/(1 + α)
            context = tf.matmul(unit_rows[:rows], unit_rows[rows:], transpose_b=True)  # cos(F_i, F_k), (B, C)
            weight = 1.0 if self.lambda_c == math.inf else self.lambda_c
            loss += weight * self._violations(context, labels)
        return loss
