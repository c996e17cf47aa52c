"""`TrainingLoop` hooks: per-step work beside the optimizer update."""


class MemoryBankHook:
    """Keeps a `tfdml.data.MemoryBank` current during `TrainingLoop.fit`.

    Before training (after any resume, so with the weights training starts from)
    the bank is filled with the model's inference embeddings of `fill_data`; in
    every step the rows of the batch's images are overwritten with the step's
    training embeddings (all replicas' rows). Batches must be
    `(images, labels, indices)` (`train_pipeline(..., with_indices=True)`).

    Args:
        bank: the `MemoryBank`.
        fill_data: finite dataset of `(images, labels)` batches over the training
            split in index order, with test-time preprocessing (`eval_pipeline`).
        verbose: progress bar of the fill ("auto": when stdout is a terminal).
    """

    def __init__(self, bank, fill_data, verbose="auto"):
        self.bank = bank
        self.fill_data = fill_data
        self.verbose = verbose

    def before_training(self, loop):
        """Fills the bank with the inference embeddings of `fill_data` from `loop.model` (`TrainingLoop` hook)."""
        self.bank.fill(loop.model, self.fill_data, verbose=self.verbose)

    def after_replica_step(self, data, embeddings):
        """Overwrites the bank rows of the batch's indices (`data[2]`) with the step's `embeddings`
        (`TrainingLoop` hook); raises `ValueError` for batches without indices."""
        if len(data) < 3:
            raise ValueError("MemoryBankHook needs (images, labels, indices) batches: build the input with "
                             "with_indices=True.")
        self.bank.update(data[2], embeddings)
