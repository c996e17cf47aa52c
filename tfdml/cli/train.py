"""`tfdml-train` (`python train.py`, `python -m tfdml train`): train an embedding model.

    python train.py                                   # embedded default (digits, CPU, ~1 min)
    python train.py --config ee_cub200 --set training.epochs=10 --output runs/x
    tfdml-train --config configs/ee_cub200.yaml --set optimizer.learning_rate=1e-4

With no arguments: a small CNN (batch norm frozen) on scikit-learn's digits
classes 0–4, triplet loss with easy-positive semi-hard mining in NCA form plus
Embedding Expansion (n = 2), evaluated on the unseen classes 5–9 (Recall@1/2/4/8
and NMI for the "pool" and "fc" taps) beside the untrained model, SavedModel
exported.

`--config` takes a YAML file or the name of a config shipped with tfdml
(`--list-configs`). Training runs `tfdml.training.TrainingLoop` on one device, on
several GPUs or on several machines (each worker runs this same command with its
own `TF_CONFIG`, or under Slurm with `--set training.strategy=multi_worker`).

Run directory (`--output`): one run at a time (a `.lock` file names the
running process); rerunning the command of a killed run resumes it from its last
checkpoint ("Resuming from epoch N (step S)") if the config is unchanged (a
changed config is refused with the differing keys listed, unless
`--allow-config-change`, which records both configs); a finished run
(`metrics.json`) is not trained again unless `--overwrite`.

Console: a progress bar over the steps on a terminal, one line per epoch
otherwise; `--verbose` always the bar, `--quiet` only the final table (its title
names the weights and split it reports). Errors in the command line, config or
data, and an output directory that cannot be written, print `error: <message>`
(exit status 2); `--debug` shows the traceback and TensorFlow's start-up
messages. Ctrl-C (status 130) and SIGTERM (143) end the run at any time; the
last checkpoint stays usable and the same command resumes from it. Several
workers wait at most `training.cluster_timeout` seconds for each other.
"""
import argparse

from tfdml.cli.common import add_common_arguments, progress_verbosity, run_cli, start_devices


def build_parser(prog=None):
    """The `argparse` parser of `tfdml-train` (`prog`: the program name shown in usage)."""
    parser = argparse.ArgumentParser(prog=prog or "tfdml-train", description="Train a tfdml embedding model.")
    parser.add_argument("--config", help="YAML config file or the name of a shipped config, e.g. ee_cub200 "
                                          "(default: the embedded default)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.epochs=3 (repeatable)")
    parser.add_argument("--output", help="run directory (overrides output_dir)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete a finished run in the run directory and train again")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume a killed run although the config differs from its config.yaml (both configs "
                             "and the epoch of the change are recorded in the run directory)")
    parser.add_argument("--list-configs", action="store_true", help="list the shipped configs and exit")
    add_common_arguments(parser)
    return parser


def main(argv=None, prog=None):
    """Trains as the command line says; returns the final metrics per tap (see `tfdml.training.run`).

    Raises the errors `cli` turns into `error: …` lines.
    """
    args = build_parser(prog).parse_args(argv)
    from tfdml.training.config import load_config, packaged_configs

    if args.list_configs:
        names = list(packaged_configs())
        print("\n".join(names))
        return names
    overrides = list(args.set) + ([f"output_dir={args.output}"] if args.output else [])
    config = load_config(args.config, overrides)
    start_devices(args.debug)
    from tfdml.training.runner import run

    return run(config, verbose=progress_verbosity(args), overwrite=args.overwrite,
               allow_config_change=args.allow_config_change)


def cli(argv=None, prog=None):
    """Console entry point: runs `main`, returns the exit status."""
    return run_cli(main, argv, prog)


if __name__ == "__main__":
    raise SystemExit(cli())
