"""Sweeps: configs × a grid of overrides × seeds, run one after another, summarised as mean ± std.

    python sweep.py --config configs/ee_cars196.yaml --grid expansion.n_points=2,4,8,16,32 \\
        --grid expansion.normalize=true,false --plot-x expansion.n_points --output runs/ee_fig4_5
    python sweep.py --config configs/roth_margin_cub200.yaml --config configs/roth_ms_cub200.yaml \\
        --seeds 0,1,2,3,4 --output runs/roth_table2

Every combination of one `--config`, one value of each `--grid` key and one seed
is a run of `tfdml.training.run` in its own directory
`<output>/<config name>/<key=value,…>/seed<s>` (`--set` overrides apply to all). Runs
go sequentially in this process; a run whose `metrics.json` exists is skipped and
an interrupted one resumes from its checkpoints, so rerunning the command continues
a sweep. All configs are validated before the first run (errors name the key).

Outputs in `<output>`: `summary.csv` / `summary.md` (one row per config and grid
point: the number of seeds and, per tap and metric of `metrics.json`, mean ± sample
standard deviation (ddof = 1) over the seeds, in %), `runs.csv` (every run's
values) and with `--plot-x KEY` `<metric>_vs_<KEY>.png`: the mean (± std bars)
against the values of that grid key, one line per config and value of the other
grid keys (EE Figs. 4–5: Recall@1 against n with and without L2 on synthetic
points).
"""
import csv
import itertools
import json
import os
import re

import numpy as np

from tfdml.training.config import load_config, load_yaml, parse_override


def parse_grid(text):
    """'key=v1,v2,…' or 'key=[v1, v2]' → (key, [YAML-parsed values])."""
    key, raw = parse_override(text)
    values = raw if isinstance(raw, list) else [load_yaml(v) for v in str(text.split("=", 1)[1]).split(",")]
    if not values:
        raise ValueError(f"--grid {text!r} has no values.")
    return key, values


def _label(value):
    """A grid value as a file-name-safe string."""
    text = json.dumps(value) if isinstance(value, (bool, list, dict)) or value is None else str(value)
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def plan_runs(configs, grid=(), seeds=None, output="runs/sweep", overrides=()):
    """Every run of a sweep, validated.

    Args:
        configs: YAML config paths.
        grid: list of (dotted key, [values]).
        seeds: list of seeds, or None for each config's own seed.
        output: sweep directory.
        overrides: "key=value" strings applied to every run.

    Returns:
        list of dicts with `config` (name), `point` ({key: value}), `seed`,
        `run_dir` and `resolved` (the validated config).
    """
    keys = [key for key, _ in grid]
    if len(set(keys)) != len(keys):
        raise ValueError(f"--grid names a key twice: {keys}.")
    names = [os.path.splitext(os.path.basename(path))[0] for path in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"--config names must differ (they name the run directories): {names}.")
    runs = []
    for path, name in zip(configs, names):
        for values in itertools.product(*(values for _, values in grid)):
            point = dict(zip(keys, values))
            for seed in (seeds if seeds is not None else [None]):
                point_dir = ",".join(f"{key}={_label(value)}" for key, value in point.items()) or "base"
                run_overrides = list(overrides) + [f"{key}={json.dumps(value)}" for key, value in point.items()]
                if seed is not None:
                    run_overrides.append(f"seed={seed}")
                resolved = load_config(path, run_overrides)
                run_dir = os.path.join(output, name, point_dir, f"seed{resolved['seed']}")
                resolved["output_dir"] = run_dir
                runs.append({"config": name, "point": point, "seed": resolved["seed"], "run_dir": run_dir,
                             "resolved": resolved})
    return runs


def execute(runs, train=None, verbose=2):
    """Runs each planned run whose `metrics.json` does not exist yet (sequentially)."""
    import keras

    from tfdml.training.runner import run

    train = train or run
    for index, planned in enumerate(runs, start=1):
        if os.path.exists(os.path.join(planned["run_dir"], "metrics.json")):
            print(f"[{index}/{len(runs)}] done already: {planned['run_dir']}")
            continue
        print(f"[{index}/{len(runs)}] {planned['run_dir']}")
        keras.backend.clear_session()
        train(planned["resolved"], verbose=verbose)


def collect(runs):
    """Each run's `metrics.json` as {"config", "point", "seed", "values": {"tap/metric": value}}."""
    rows = []
    for planned in runs:
        path = os.path.join(planned["run_dir"], "metrics.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"No metrics.json in {planned['run_dir']}: the run has not finished.")
        with open(path) as handle:
            metrics = json.load(handle)
        values = {f"{tap}/{key}": float(value) for tap, result in metrics.items() if isinstance(result, dict)
                  for key, value in result.items()}
        rows.append({"config": planned["config"], "point": planned["point"], "seed": planned["seed"],
                     "values": values})
    return rows


def summarize(rows):
    """Groups runs by (config, grid point): {"config", "point", "n", "mean": {…}, "std": {…}} per group."""
    groups = {}
    for row in rows:
        groups.setdefault((row["config"], json.dumps(row["point"], sort_keys=True)), []).append(row)
    summary = []
    for (config, _), members in groups.items():
        columns = [key for key in members[0]["values"] if all(key in m["values"] for m in members)]
        table = np.array([[m["values"][key] for key in columns] for m in members], dtype=float)
        std = table.std(axis=0, ddof=1) if len(members) > 1 else np.full(len(columns), np.nan)
        summary.append({"config": config, "point": members[0]["point"], "n": len(members),
                        "mean": dict(zip(columns, table.mean(axis=0))), "std": dict(zip(columns, std))})
    return summary


def _columns(summary, taps, metrics):
    columns = list(dict.fromkeys(key for group in summary for key in group["mean"]))
    return [c for c in columns if (not taps or c.split("/")[0] in taps) and (not metrics or c.split("/")[1] in metrics)]


def _cell(group, column):
    mean, std = group["mean"].get(column), group["std"].get(column)
    if mean is None:
        return "–"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if np.isfinite(std) else "")


def format_summary(summary, taps=(), metrics=("recall@1",)):
    """A Markdown table: one row per config and grid point, mean ± std (%) per selected tap/metric."""
    columns = _columns(summary, taps, metrics)
    keys = list(dict.fromkeys(key for group in summary for key in group["point"]))
    header = ["config"] + keys + ["seeds"] + [f"{c} (%)" for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in summary:
        cells = [group["config"]] + [str(group["point"].get(k, "")) for k in keys] + [str(group["n"])]
        lines.append("| " + " | ".join(cells + [_cell(group, c) for c in columns]) + " |")
    return "\n".join(lines)


def write_summary(output, rows, summary, taps=(), metrics=("recall@1",)):
    """Writes runs.csv, summary.csv (every column: mean and std) and summary.md into `output`."""
    os.makedirs(output, exist_ok=True)
    keys = list(dict.fromkeys(key for row in rows for key in row["point"]))
    value_keys = list(dict.fromkeys(key for row in rows for key in row["values"]))
    with open(os.path.join(output, "runs.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["config"] + keys + ["seed"] + value_keys)
        for row in rows:
            writer.writerow([row["config"]] + [row["point"].get(k) for k in keys] + [row["seed"]]
                            + [row["values"].get(k) for k in value_keys])
    with open(os.path.join(output, "summary.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        columns = _columns(summary, (), ())
        writer.writerow(["config"] + keys + ["seeds"] + [f"{c} {s}" for c in columns for s in ("mean", "std")])
        for group in summary:
            writer.writerow([group["config"]] + [group["point"].get(k) for k in keys] + [group["n"]]
                            + [v for c in columns for v in (group["mean"].get(c), group["std"].get(c))])
    text = format_summary(summary, taps, metrics)
    with open(os.path.join(output, "summary.md"), "w") as handle:
        handle.write(text + "\n")
    return text


def plot_against(summary, x_key, column, path):
    """Mean (± std) of `column` ("tap/metric") against the grid key `x_key`, a line per config and value of
    the other grid keys. Returns `path`."""
    from tfdml.analysis.plotting import figure, save

    lines = {}
    for group in summary:
        if x_key not in group["point"]:
            raise ValueError(f"--plot-x {x_key!r} is not a --grid key (grid keys: {sorted(group['point'])}).")
        others = ", ".join(f"{k}={v}" for k, v in group["point"].items() if k != x_key)
        label = group["config"] + (f" ({others})" if others else "")
        if column in group["mean"]:
            lines.setdefault(label, []).append((group["point"][x_key], group["mean"][column], group["std"][column]))
    if not lines:
        raise ValueError(f"No run has {column!r}; columns: {sorted(summary[0]['mean']) if summary else []}.")
    fig, (ax,) = figure(width=6.0)
    for label, points in lines.items():
        x, mean, std = (np.array(v, dtype=float) for v in zip(*sorted(points)))
        ax.errorbar(x, 100 * mean, yerr=np.where(np.isfinite(std), 100 * std, 0.0), marker="o", capsize=3,
                    label=label)
        ax.set_xticks(x)
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"{column} (%)")
    ax.set_title(f"{column} against {x_key}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)
