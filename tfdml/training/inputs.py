"""Training input for `TrainingLoop` under any strategy: each worker reads its share of one global batch."""
from tfdml.data.pipelines import train_pipeline


def train_input(split, batch_size=128, **pipeline_kwargs):
    """Input function for `TrainingLoop.fit` over `tfdml.data.train_pipeline`.

    The sampler draws the same global index batches of `batch_size` as a
    single process with the same seed; replica r (of R, in
    `tf.distribute` replica order) gets positions [r·B/R, (r+1)·B/R) of each,
    and each worker loads and augments only its own replicas' images. The
    all-gathered global batch the loss mines is therefore the one-process
    batch.

    Args:
        split: the training `tfdml.data.Split`.
        batch_size: global batch size B (divisible by the number of replicas).
        **pipeline_kwargs: the other `train_pipeline` arguments (sampler,
            samples_per_class, augmentation, image_size, seed).

    Returns:
        A function `(tf.distribute.InputContext, skip_batches) → tf.data.Dataset`
        of per-replica batches.
    """

    def dataset_fn(context, skip_batches=0):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        replicas = (context.input_pipeline_id * local, local, context.num_replicas_in_sync)
        return train_pipeline(split, batch_size, skip_batches=skip_batches, replicas=replicas, **pipeline_kwargs)

    return dataset_fn
