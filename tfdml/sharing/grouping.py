"""The grouping variant T^G of "Sharing Matters" (§3.2): surrogate labels from k-means.

Backbone features are standardised per class, f̂ = (f − μ_c) / σ_c (per
dimension, over the training images of class c), which removes what
distinguishes the classes; k-means on f̂ then splits the training set into L
groups (default 30) of images that share characteristics across classes. The
group ids replace the class labels of B* and φ* is trained with an ordinary
ranking loss on them. The public code re-clusters every 4 epochs
(`RegroupingCallback`).
"""
import keras
import numpy as np

from tfdml.checks import check_int


def standardize_per_class(features, labels, epsilon=1e-8):
    """f̂ = (f − μ_c) / σ_c per class c and dimension (σ the population std; σ < ε counts as 1).

    Args:
        features: (N, F) array.
        labels: (N,) class labels.

    Returns:
        (N, F) float64 array.
    """
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"features must be (N, F) and labels (N,), got {features.shape} and {labels.shape}.")
    standardized = np.empty_like(features)
    for label in np.unique(labels):
        rows = labels == label
        mean, std = features[rows].mean(axis=0), features[rows].std(axis=0)
        standardized[rows] = (features[rows] - mean) / np.where(std < epsilon, 1.0, std)
    return standardized


def cluster_groups(features, labels, num_groups=30, seed=0, standardize=True):
    """Group ids of the grouping variant: k-means (scikit-learn) on per-class standardised features.

    Args:
        features: (N, F) backbone features of the training set.
        labels: (N,) class labels.
        num_groups: L.
        seed: k-means seed.
        standardize: standardise per class first (the paper's T^G); False clusters the raw
            features (Table 8's "T^G − std" ablation).

    Returns:
        (N,) int32 group ids in [0, L).
    """
    from sklearn.cluster import KMeans

    check_int(num_groups, "num_groups", minimum=2)
    standardized = standardize_per_class(features, labels) if standardize else np.asarray(features, np.float64)
    if not np.isfinite(standardized).all():
        raise ValueError("features contain NaN or inf; cannot cluster them into groups.")
    if num_groups > len(standardized):
        raise ValueError(f"num_groups={num_groups} exceeds the number of samples ({len(standardized)}).")
    kmeans = KMeans(n_clusters=num_groups, n_init=1, random_state=seed)
    return kmeans.fit_predict(standardized).astype(np.int32)


class GroupAssignment:
    """The current group id of every training sample; a callable for `train_pipeline(relabel=...)`.

    Args:
        num_samples: N.
    """

    def __init__(self, num_samples):
        self.groups = np.zeros(int(num_samples), np.int32)
        self.updates = 0

    def __call__(self):
        return self.groups

    def update(self, groups):
        """Replaces the group ids with `groups` (same shape) and counts the update."""
        groups = np.asarray(groups, np.int32)
        if groups.shape != self.groups.shape:
            raise ValueError(f"groups must have shape {self.groups.shape}, got {groups.shape}.")
        self.groups = groups
        self.updates += 1


def pool_features(model, dataset):
    """(features (N, F), labels (N,)) of the un-normalised "pool" tap over a finite dataset."""
    extractor = keras.Model(model.inputs[0], model.get_layer("pool").output)
    features, labels = [], []
    for images, batch_labels in dataset:
        features.append(np.asarray(extractor(images, training=False)))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(features), np.concatenate(labels)


class RegroupingCallback(keras.callbacks.Callback):
    """Clusters the training set into groups when training starts and every `every` epochs.

    Args:
        dataset: finite dataset of the training split in index order,
            `(images, class labels)` without augmentation
            (`tfdml.data.eval_pipeline(train_split, ...)`).
        assignment: the `GroupAssignment` the B* pipeline reads.
        num_groups: L (paper: 30).
        every: re-cluster every this many epochs (public code: 4).
        seed: k-means seed (incremented at every re-clustering).
        standardize: per-class standardisation before k-means (False: Table 8's
            "T^G − std").
    """

    def __init__(self, dataset, assignment, num_groups=30, every=4, seed=0, standardize=True):
        super().__init__()
        self.dataset = dataset
        self.assignment = assignment
        self.num_groups = check_int(num_groups, "num_groups", minimum=2)
        self.every = check_int(every, "every", minimum=1)
        self.seed = int(seed)
        self.standardize = bool(standardize)
        self._just_grouped = False

    def regroup(self):
        """Clusters now with the model's current features; returns the group ids."""
        features, labels = pool_features(self.model, self.dataset)
        groups = cluster_groups(features, labels, self.num_groups, self.seed + self.assignment.updates,
                                self.standardize)
        self.assignment.update(groups)
        return groups

    def on_train_begin(self, logs=None):
        """Groups the samples before the first batch, also when a run resumes (Keras callback)."""
        # At the start of training (also when resuming with restored weights), before the first batch.
        self.regroup()
        self._just_grouped = True

    def on_epoch_begin(self, epoch, logs=None):
        """Regroups every `every` epochs, unless training has just grouped (Keras callback)."""
        if epoch % self.every == 0 and not self._just_grouped:
            self.regroup()
        self._just_grouped = False
