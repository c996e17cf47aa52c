"""Train an embedding model.

    python train.py                                   # embedded default (digits, CPU, ~1 min)
    python train.py --config configs/ee_cub200.yaml --set training.epochs=10 --output runs/x

With no arguments: a small CNN on scikit-learn's digits classes 0–4, batch-hard
triplet loss with Embedding Expansion (n = 2), evaluated on the unseen classes
5–9 (Recall@1/2/4/8 and NMI for the "pool" and "fc" taps), SavedModel exported.

Training runs `tfdml.training.TrainingLoop` on one device, on several GPUs or on
several machines (each worker runs this same command with its own `TF_CONFIG`,
or under Slurm with `--set training.strategy=multi_worker`). Rerunning the
command of a killed run resumes it from its last checkpoint.
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train a tfdml embedding model.")
    parser.add_argument("--config", help="YAML config file (default: the embedded default)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.epochs=3 (repeatable)")
    parser.add_argument("--output", help="run directory (overrides output_dir)")
    args = parser.parse_args(argv)
    from tfdml.training import load_config, run

    overrides = list(args.set) + ([f"output_dir={args.output}"] if args.output else [])
    return run(load_config(args.config, overrides))


if __name__ == "__main__":
    main()
