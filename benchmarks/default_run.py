"""The embedded default run (`python train.py`) over several seeds: untrained vs trained.

    python benchmarks/default_run.py                       # 3 seeds of the default config
    python benchmarks/default_run.py --set loss.params.mining=hard --seeds 0,1,2

Prints mean ± std over seeds of Recall@1 and NMI on the unseen digits 5–9 for
every tap, for the freshly initialised model ("untrained") and after training,
plus the wall time per run. This is the table in the README ("The default run").
"""
import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def summarise(values):
    import numpy as np

    values = 100 * np.asarray(values, dtype=float)
    return f"{values.mean():6.2f} ± {values.std():4.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="YAML config (default: the embedded default)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = parser.parse_args(argv)
    from tfdml.training import load_config, run

    rows, seconds = {}, []
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory() as run_dir:
            config = load_config(args.config, list(args.set) + [f"seed={seed}", f"output_dir={run_dir}",
                                                                "training.evaluate_untrained=true"])
            start = time.perf_counter()
            trained = run(config, verbose=0)
            seconds.append(time.perf_counter() - start)
            import json

            with open(os.path.join(run_dir, "untrained_metrics.json")) as handle:
                untrained = json.load(handle)
        for stage, results in (("untrained", untrained), ("trained", trained)):
            for tap, metrics in results.items():
                row = rows.setdefault(f"{stage} {tap}", {"recall@1": [], "nmi": []})
                row["recall@1"].append(metrics["recall@1"])
                row["nmi"].append(metrics["nmi"])
    print(f"overrides: {args.set or 'none'}; seeds {args.seeds}; "
          f"{sum(seconds) / len(seconds):.0f} s per run (incl. evaluation and export)")
    print("| model | R@1 | NMI |\n|---|---|---|")
    for name, row in sorted(rows.items(), key=lambda item: (item[0].split()[1], item[0].split()[0] != "untrained")):
        print(f"| {name} | {summarise(row['recall@1'])} | {summarise(row['nmi'])} |")


if __name__ == "__main__":
    main()
