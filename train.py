"""Train an embedding model: `python train.py [--config NAME|FILE] [--set KEY=VALUE ...] [--output DIR]`.

The repository's entry point of `tfdml-train` (see `tfdml/cli/train.py` or
`python train.py --help`). With no arguments: the embedded default (digits, CPU).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfdml.cli.train import cli, main  # noqa: E402,F401  (tests and scripts call train.main)

if __name__ == "__main__":
    sys.exit(cli())
