"""Milbich et al., "Sharing Matters for Generalization in Deep Metric Learning".

Beside the class embedding φ, a second head φ* learns characteristics shared
across classes from shared triplets T* (`tfdml.losses.SharedTripletLoss`) or
from k-means groups (`grouping`); an adversarial regressor behind gradient
reversal decorrelates the two (`decorrelation`); `SharingObjective` is the
objective (eq. 3) and its two-batch training step (Algorithm 1) for a
two-head `tfdml.models.EmbeddingModel(heads={"class": D, "shared": D*})`.
"""
from tfdml.sharing.data import paired_batches, paired_train_pipeline
from tfdml.sharing.decorrelation import DecorrelationRegressor, GradientReversal, decorrelation, reverse_gradient
from tfdml.sharing.grouping import (GroupAssignment, RegroupingCallback, cluster_groups, pool_features,
                                    standardize_per_class)
from tfdml.sharing.objective import LOG_KEYS, SharingObjective

__all__ = [
    "DecorrelationRegressor",
    "GradientReversal",
    "GroupAssignment",
    "LOG_KEYS",
    "RegroupingCallback",
    "SharingObjective",
    "cluster_groups",
    "decorrelation",
    "paired_batches",
    "paired_train_pipeline",
    "pool_features",
    "reverse_gradient",
    "standardize_per_class",
]
