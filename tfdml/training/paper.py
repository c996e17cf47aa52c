"""A paper config's reported numbers beside a run's: the `paper` section of a config.

    paper:
      results:                 # what the paper reports for this config
        - {table: "Table 2", dataset: cub200, metric: recall@1, value: 57.4, std: null, tap: null}
      differences: [...]       # protocol differences from the paper that apply to this config
      note: ""                 # e.g. why `results` is empty

`value` and `std` are in percent, as papers print them; `metric` is a key of the
run's metrics (`recall@K`, `nmi`); `tap` (null: the config's `training.export_tap`)
is the embedding compared. `train.py` (`tfdml.training.run`), `evaluate.py` on a run
directory and `sweep.py` (mean over seeds) print the comparison and write it:
`metrics.json` key `paper_vs_run` and `paper_vs_run.md` in the run directory, the
`--output` JSON of `evaluate.py`, and `summary.md` of a sweep.
"""
import numbers

#: metrics.json key of the comparison (not a tap).
PAPER_KEY = "paper_vs_run"
PAPER_DEFAULT = {"results": [], "differences": [], "note": ""}
_REQUIRED = ("table", "dataset", "metric", "value")
_OPTIONAL = ("std", "tap")


def _number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_paper(paper):
    """Checks a `paper` section; errors name the key (`paper.results[1].value`)."""
    if not isinstance(paper.get("differences"), list) or not all(isinstance(d, str) for d in paper["differences"]):
        raise ValueError(f"Config key 'paper.differences' must be a list of strings, got {paper.get('differences')!r}.")
    if not isinstance(paper.get("results"), list):
        raise ValueError(f"Config key 'paper.results' must be a list, got {paper.get('results')!r}.")
    for index, entry in enumerate(paper["results"]):
        where = f"paper.results[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"Config key '{where}' must be a mapping with keys {_REQUIRED + _OPTIONAL}, "
                             f"got {entry!r}.")
        unknown = sorted(set(entry) - set(_REQUIRED + _OPTIONAL))
        if unknown:
            raise ValueError(f"Config key '{where}' has unknown keys {unknown}; valid keys: {_REQUIRED + _OPTIONAL}.")
        for key in _REQUIRED:
            if key not in entry:
                raise ValueError(f"Config key '{where}.{key}' is missing.")
        for key in ("table", "dataset", "metric"):
            if not isinstance(entry[key], str):
                raise ValueError(f"Config key '{where}.{key}' must be a string, got {entry[key]!r}.")
        if not _number(entry["value"]):
            raise ValueError(f"Config key '{where}.value' must be a number (percent), got {entry['value']!r}.")
        if entry.get("std") is not None and not _number(entry["std"]):
            raise ValueError(f"Config key '{where}.std' must be a number (percent) or null, got {entry['std']!r}.")
        if entry.get("tap") is not None and not isinstance(entry["tap"], str):
            raise ValueError(f"Config key '{where}.tap' must be a tap name or null, got {entry['tap']!r}.")


def compare(config, results, spread=None):
    """Rows of paper vs run for the config's dataset.

    Args:
        config: a validated config.
        results: {tap: {metric: value in [0, 1]}} (a run's metrics; a sweep's means).
        spread: optional {tap: {metric: std in [0, 1]}} of the run values (a sweep over seeds).

    Returns:
        list of dicts: table, dataset, metric, tap, paper, paper_std, run, run_std, difference
        (percent; run and difference None when the run has no such tap or metric).
    """
    rows = []
    for entry in config.get("paper", PAPER_DEFAULT)["results"]:
        if entry["dataset"] != config["dataset"]["name"]:
            continue
        tap = entry.get("tap") or config["training"]["export_tap"]
        value = results.get(tap, {}).get(entry["metric"])
        run = None if value is None else 100.0 * float(value)
        std = (spread or {}).get(tap, {}).get(entry["metric"])
        rows.append({"table": entry["table"], "dataset": entry["dataset"], "metric": entry["metric"], "tap": tap,
                     "paper": float(entry["value"]), "paper_std": entry.get("std"), "run": run,
                     "run_std": None if std is None else 100.0 * float(std),
                     "difference": None if run is None else run - float(entry["value"])})
    return rows


def _cell(value, std=None):
    if value is None:
        return "–"
    return f"{value:.2f}" + (f" ± {std:.2f}" if std is not None and std == std else "")


def format_comparison(rows, differences=(), note=""):
    """Markdown: the "paper vs this run" table (percent) and the protocol differences that apply."""
    lines = ["paper vs this run (%)", "",
             "| table | dataset | tap | metric | paper | this run | difference |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        difference = "–" if row["difference"] is None else f"{row['difference']:+.2f}"
        lines.append(f"| {row['table']} | {row['dataset']} | {row['tap']} | {row['metric']} | "
                     f"{_cell(row['paper'], row['paper_std'])} | {_cell(row['run'], row['run_std'])} | "
                     f"{difference} |")
    if not rows:
        lines.append("| – | – | – | – | (no paper numbers in the config) | – | – |")
    if note:
        lines += ["", f"Note: {note}"]
    if differences:
        lines += ["", "Protocol differences from the paper that apply to this run:"]
        lines += [f"- {difference}" for difference in differences]
    return "\n".join(lines)


def comparison_record(config, results, spread=None):
    """{"rows", "differences", "note", "text"} of a config with a `paper` section, else None."""
    paper = config.get("paper") or PAPER_DEFAULT
    if not paper["results"] and not paper["differences"] and not paper["note"]:
        return None
    rows = compare(config, results, spread)
    return {"rows": rows, "differences": list(paper["differences"]), "note": paper["note"],
            "text": format_comparison(rows, paper["differences"], paper["note"])}
