"""`tfdml-sweep` (`python sweep.py`, `python -m tfdml sweep`): configs × a grid of overrides × seeds.

    python sweep.py --config ee_cars196 --grid expansion.n_points=2,4,8,16,32 \\
        --grid expansion.normalize=true,false --plot-x expansion.n_points --output runs/ee_fig4_5
    python sweep.py --config roth_margin_cub200 --seeds 0,1,2,3,4 --output runs/roth_margin
    python sweep.py --sweep configs/sweeps/roth_samplers_cub200.yaml

See `tfdml.training.sweep` for the run directories and the outputs. `--verbose` /
`--quiet` set the runs' progress output as in `tfdml-train`; errors print
`error: <message>` (exit status 2), `--debug` shows the traceback.
"""
import argparse
import os

from tfdml.cli.common import add_common_arguments, progress_verbosity, run_cli, start_devices
from tfdml.training.sweep import _columns, collect, execute, load_sweep, paper_comparisons, parse_grid, plan_runs, \
    plot_against, summarize, write_hparams, write_summary


def build_parser(prog=None):
    """The `argparse` parser of `tfdml-sweep` (`prog`: the program name shown in usage)."""
    parser = argparse.ArgumentParser(prog=prog or "tfdml-sweep", description="Run configs over a grid of overrides "
                                     "and seeds; summarise the test metrics as mean ± std.")
    parser.add_argument("--sweep", default=None, metavar="FILE",
                        help="sweep file (config, grid, seeds, set, output); the other options add to it")
    parser.add_argument("--config", action="append", default=[],
                        help="YAML config file or shipped config name (repeatable)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,…",
                        help="a config key and its values (repeatable; all combinations are run)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: each config's seed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for every run (repeatable)")
    parser.add_argument("--output", default=None, help="sweep directory (default: the sweep file's, else runs/sweep)")
    parser.add_argument("--taps", default=None, help="comma-separated taps in the printed table (default: all)")
    parser.add_argument("--metrics", default="recall@1", help="comma-separated metrics in the printed table")
    parser.add_argument("--plot-x", default=None, metavar="KEY", help="plot the first tap/metric against this "
                                                                      "grid key")
    parser.add_argument("--select", default="best", choices=("best", "final"),
                        help="the metrics of each run: its best epoch's (default, as the papers) or the final ones")
    parser.add_argument("--plan", action="store_true", help="only list the runs")
    add_common_arguments(parser)
    return parser


def main(argv=None, prog=None):
    """Runs the sweep the command line describes; returns the summary (with --plan the planned runs).

    Raises the errors `cli` turns into `error: …` lines.
    """
    args = build_parser(prog).parse_args(argv)
    sweep_file = load_sweep(args.sweep) if args.sweep else {"config": [], "grid": [], "seeds": None, "set": [],
                                                            "output": None}
    configs = sweep_file["config"] + args.config
    if not configs:
        raise ValueError("No config: give --config or a --sweep file with 'config'.")
    grid = sweep_file["grid"] + [parse_grid(text) for text in args.grid]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else sweep_file["seeds"]
    args.output = args.output or sweep_file["output"] or "runs/sweep"
    runs = plan_runs(configs, grid, seeds, args.output, sweep_file["set"] + args.set)
    if args.plan:
        for planned in runs:
            print(planned["run_dir"])
        return runs
    start_devices(args.debug)
    execute(runs, verbose=progress_verbosity(args))
    rows = collect(runs, args.select)
    summary = summarize(rows)
    taps = args.taps.split(",") if args.taps else ()
    metrics = args.metrics.split(",")
    print(write_summary(args.output, rows, summary, taps, metrics, paper_comparisons(runs, summary)))
    hparams = os.path.abspath(write_hparams(args.output, rows))
    print(f"hparams: {hparams} (tensorboard --logdir {hparams})")
    if args.plot_x:
        columns = _columns(summary, taps, metrics)
        name = f"{columns[0].replace('/', '_').replace('@', '_at_')}_vs_{args.plot_x}.png"
        print(f"plot: {plot_against(summary, args.plot_x, columns[0], os.path.join(args.output, name))}")
    return summary


def cli(argv=None, prog=None):
    """Console entry point: runs `main`, returns the exit status."""
    return run_cli(main, argv, prog)


if __name__ == "__main__":
    raise SystemExit(cli())
