"""tfdml's command-line tools: `tfdml-train`, `tfdml-evaluate`, `tfdml-sweep`, `tfdml-weights` (also `python -m tfdml <command>`
and the repository's `train.py`, `evaluate.py`, `sweep.py`).

Each tool module has `main(argv=None)` (parses, runs, returns the results,
raises on errors — for Python callers and tests) and `cli(argv=None, prog=None)`
(the console entry point: returns an exit status; a user error prints
`error: <message>` and gives status 2, `--debug` shows the full traceback).
"""
COMMANDS = {
    "train": "train an embedding model (a config, --set overrides)",
    "evaluate": "evaluate a trained model on a dataset's test split",
    "sweep": "run configs over a grid of overrides and seeds; mean ± std tables",
    "weights": "list the published ImageNet checkpoints; convert a PyTorch checkpoint to .weights.h5",
}
