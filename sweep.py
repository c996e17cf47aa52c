"""Run configs over a grid of overrides and seeds: `python sweep.py --config NAME|FILE --grid KEY=V1,V2 ...`.

The repository's entry point of `tfdml-sweep` (see `tfdml/cli/sweep.py`,
`tfdml.training.sweep` or `python sweep.py --help`).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfdml.cli.sweep import cli, main  # noqa: E402,F401  (tests and scripts call sweep.main)

if __name__ == "__main__":
    sys.exit(cli())
