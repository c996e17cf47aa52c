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
standard deviation (ddof = 1) over the seeds, in %; by default the metrics of each
run's best epoch, as the papers report them (Roth et al.: the best validation
Recall@1), or with `--select final` those after the last epoch), `runs.csv` (every run's
values) and with `--plot-x KEY` `<metric>_vs_<KEY>.png`: the mean (± std bars)
against the values of that grid key, one line per config and value of the other
grid keys (EE Figs. 4–5: Recall@1 against n with and without L2 on synthetic
points), and `hparams/` for TensorBoard's HParams dashboard (`write_hparams`:
one trial per run with its config, grid values and seed, and every tap/metric of
its `metrics.json`): `tensorboard --logdir <output>/hparams`.

A sweep file (`--sweep FILE`, `load_sweep`) holds a whole sweep: `config` (a list of
config files or shipped config names), `grid` ({key: list of values, or {label:
value} whose labels name the run directories and table rows}), and optionally
`seeds`, `set` and `output`; command-line options add to it (`--config`, `--grid`,
`--set`) or replace it (`--seeds`, `--output`). Roth et al.'s sampler study
(Tables 7–9): `configs/sweeps/roth_samplers_{dataset}.yaml`.
"""
import csv
import itertools
import json
import os
import re

import numpy as np

from tfdml.training.config import load_config, load_yaml, parse_override
from tfdml.training.paper import PAPER_KEY, comparison_record


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


SWEEP_KEYS = ("config", "grid", "seeds", "set", "output")


def load_sweep(path):
    """A sweep file as {"config": [...], "grid": [(key, values)], "seeds": list or None, "set": [...],
    "output": str or None}; `grid` values are lists or {label: value} mappings (see the module docstring).

    Raises:
        ValueError: unknown keys or values of the wrong type, naming the key and the file.
    """
    with open(path) as handle:
        data = load_yaml(handle.read())
    if not isinstance(data, dict):
        raise ValueError(f"Sweep file {path!r} must be a mapping with keys {list(SWEEP_KEYS)}.")
    unknown = sorted(set(data) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in sweep file {path!r}; valid keys: {list(SWEEP_KEYS)}.")
    configs = data.get("config") or []
    if isinstance(configs, str):
        configs = [configs]
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise ValueError(f"Sweep file {path!r}: 'grid' must map config keys to lists or {{label: value}} mappings.")
    for key, values in grid.items():
        if not isinstance(values, (list, dict)) or not values:
            raise ValueError(f"Sweep file {path!r}: grid key {key!r} needs a non-empty list or mapping of values.")
    seeds = data.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not all(isinstance(v, int) for v in seeds)):
        raise ValueError(f"Sweep file {path!r}: 'seeds' must be a list of ints, got {seeds!r}.")
    overrides = data.get("set") or []
    if not isinstance(overrides, list):
        raise ValueError(f"Sweep file {path!r}: 'set' must be a list of 'key=value' strings.")
    return {"config": list(configs), "grid": list(grid.items()), "seeds": seeds, "set": list(overrides),
            "output": data.get("output")}


def _grid_values(values):
    """[(label, value)] of one grid key: a list (labels from the values) or a {label: value} mapping."""
    if isinstance(values, dict):
        return [(str(label), value) for label, value in values.items()]
    return [(value, value) for value in values]


def plan_runs(configs, grid=(), seeds=None, output="runs/sweep", overrides=()):
    """Every run of a sweep, validated.

    Args:
        configs: YAML config paths.
        grid: list of (dotted key, [values] or {label: value}); a labelled value
            appears as its label in the run directory, `point` and the tables.
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
        for labelled in itertools.product(*(_grid_values(values) for _, values in grid)):
            point = dict(zip(keys, (label for label, _ in labelled)))
            values = [value for _, value in labelled]
            for seed in (seeds if seeds is not None else [None]):
                point_dir = ",".join(f"{key}={_label(value)}" for key, value in point.items()) or "base"
                run_overrides = list(overrides) + [f"{key}={json.dumps(value)}" for key, value in zip(keys, values)]
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


#: Which metrics of a run `collect` reads: the best epoch's (`metrics.json`'s "best_epoch") or the final ones.
SELECTIONS = ("best", "final")


def run_metrics(metrics, select="best", where="run"):
    """{tap: {metric: value}} of one `metrics.json` dict: `select` "best" (the best epoch's) or "final".

    "best" is the test metrics of the epoch best.keras was selected at when that
    selection used the test split (the paper configs: the papers report that
    epoch). A run with a validation split (`dataset.validation_classes`) only
    measured its best epoch on the validation classes, so "best" gives its final
    test metrics — never validation numbers in a test table.

    Raises:
        ValueError: unknown `select`, or "best" for a run without a best epoch (no evaluation during
            training, or a run of an older tfdml): use select="final".
    """
    from tfdml.checks import check_choice
    from tfdml.training.runner import BEST_EPOCH

    check_choice(select, "select", SELECTIONS)
    best = metrics.get(BEST_EPOCH)
    if select == "final":
        return {tap: result for tap, result in metrics.items() if tap != BEST_EPOCH}
    if not best:
        raise ValueError(f"{where}: metrics.json has no best-epoch metrics (no evaluation during training or an "
                         "older run); select the final metrics instead (--select final).")
    if best.get("split", "test") != "test":
        return {tap: result for tap, result in metrics.items() if tap != BEST_EPOCH}
    return best["metrics"]


def collect(runs, select="best"):
    """Each run's `metrics.json` as {"config", "point", "seed", "values": {"tap/metric": value}}: the best
    epoch's metrics (`select="best"`, default, as the papers report) or the final ones ("final")."""
    rows = []
    for planned in runs:
        path = os.path.join(planned["run_dir"], "metrics.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"No metrics.json in {planned['run_dir']}: the run has not finished.")
        with open(path) as handle:
            metrics = json.load(handle)
        metrics = run_metrics(metrics, select, planned["run_dir"])
        values = {f"{tap}/{key}": float(value) for tap, result in metrics.items()
                  if tap != PAPER_KEY and isinstance(result, dict)
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


def paper_comparisons(runs, summary):
    """The "paper vs this run" text (`tfdml.training.paper`) of each (config, grid point) whose config has
    a `paper` section, with the mean ± std over seeds; {"<config> <point>": text}."""
    configs = {}
    for planned in runs:
        configs.setdefault(planned["config"], planned["resolved"])
    texts = {}
    for group in summary:
        config = configs.get(group["config"])
        if config is None:
            continue
        mean, spread = {}, {}
        for column, value in group["mean"].items():
            tap, metric = column.split("/", 1)
            mean.setdefault(tap, {})[metric] = value
            std = group["std"].get(column)
            if std is not None and np.isfinite(std):
                spread.setdefault(tap, {})[metric] = std
        record = comparison_record(config, mean, spread)
        if record is not None:
            point = ",".join(f"{k}={v}" for k, v in group["point"].items()) or "base"
            texts[f"{group['config']} {point} ({group['n']} seeds)"] = record["text"]
    return texts


def write_summary(output, rows, summary, taps=(), metrics=("recall@1",), comparisons=None):
    """Writes runs.csv, summary.csv (every column: mean and std) and summary.md into `output`;
    `comparisons` ({title: text}, `paper_comparisons`) are appended to summary.md."""
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
    for title, comparison in (comparisons or {}).items():
        text += f"\n\n### {title}\n\n{comparison}"
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


def _hparam_value(value):
    """A grid value as an HParams value (bool, int, float or str; anything else as JSON)."""
    return value if isinstance(value, (bool, int, float, str)) else json.dumps(value)


def write_hparams(output, rows):
    """Writes the HParams plugin's summaries of a sweep into `<output>/hparams`.

    The experiment (`hparams_config`: the hyperparameters "config", every grid key
    and "seed"; the metrics "tap/metric") goes to `<output>/hparams`, each run's
    trial (`hparams` + its metric values as scalars) to `<output>/hparams/<config>/<point>/seed<s>`.

    Args:
        output: sweep directory.
        rows: `collect` results.

    Returns:
        the `hparams` directory.
    """
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    root = os.path.join(output, "hparams")
    keys = list(dict.fromkeys(key for row in rows for key in row["point"]))
    metrics = list(dict.fromkeys(key for row in rows for key in row["values"]))
    domains = {"config": sorted({row["config"] for row in rows}), "seed": sorted({row["seed"] for row in rows})}
    for key in keys:
        domains[key] = sorted({_hparam_value(row["point"].get(key)) for row in rows if key in row["point"]},
                              key=lambda v: (str(type(v)), v))
    hparams = {name: hp.HParam(name, hp.Discrete(values) if len({type(v) for v in values}) == 1 else None)
               for name, values in domains.items()}
    with tf.summary.create_file_writer(root).as_default():
        hp.hparams_config(hparams=list(hparams.values()), metrics=[hp.Metric(name) for name in metrics])
    for row in rows:
        point = ",".join(f"{key}={_label(value)}" for key, value in row["point"].items()) or "base"
        trial = os.path.join(row["config"], point, f"seed{row['seed']}")
        values = {hparams["config"]: row["config"], hparams["seed"]: row["seed"],
                  **{hparams[key]: _hparam_value(value) for key, value in row["point"].items()}}
        with tf.summary.create_file_writer(os.path.join(root, trial)).as_default():
            hp.hparams(values, trial_id=trial)
            for name, value in row["values"].items():
                tf.summary.scalar(name, value, step=0)
    return root
