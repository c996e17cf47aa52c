"""Evaluate a trained model on a dataset's test split: `python evaluate.py --model RUN_DIR [--dataset digits]`.

The repository's entry point of `tfdml-evaluate` (see `tfdml/cli/evaluate.py` or
`python evaluate.py --help`).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfdml.cli.evaluate import cli, main  # noqa: E402,F401  (tests and scripts call evaluate.main)

if __name__ == "__main__":
    sys.exit(cli())
