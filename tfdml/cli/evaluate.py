"""`tfdml-evaluate` (`python evaluate.py`, `python -m tfdml evaluate`): evaluate a model on a test split.

    python evaluate.py --model runs/default --dataset digits
    python evaluate.py --model runs/default --dataset digits --taps all
    python evaluate.py --model runs/default/saved_model --dataset digits
    python evaluate.py --model model.keras --dataset cub200 --data-dir /data/CUB --tap pool

`--model` is a run directory (uses best.keras — falling back to final.keras with a
warning when best.keras is missing or corrupt — and the run's config.yaml for the
image size; the first output line names the weights: best-by-validation or
best-on-test, and the epoch), a `.keras` file, or a SavedModel exported by `tfdml.export` (its input
size is stored inside; `--image-size` overrides it). Prints Recall@K (1, 2, 4, 8;
1, 10, 100, 1000 for sop) and NMI; `--taps all` prints every tap side by side
(Vo & Hays Table 3 style). `--output FILE` writes the metrics as JSON; `--report DIR`
writes, per tap, metrics.json (every metric of `tfdml.metrics.evaluate_embeddings`),
the analysis plots (spectrum, same-vs-different, distance heatmap, synthetic
queries, joint train/test t-SNE) and a report.md embedding them
(`tfdml.analysis.write_report`), and prints where. For a run directory whose config has a `paper`
section (the paper configs), the "paper vs this run" table is printed, added to `--output` (key
`paper_vs_run`) and written to `<report>/paper_vs_run.md`. `--projector DIR` writes TensorBoard
Embedding Projector files for a uniform sample of at most `--projector-points` test images
(`tfdml.analysis.projector`: one checkpoint variable per tap, metadata.tsv, sprite.png,
projector_config.pbtxt) and, as image summaries, a grid of 6 fixed test queries and their 5
nearest neighbours per tap (green/red frames: same/other class; `tfdml.analysis.retrieval_examples`);
open them with `tensorboard --logdir DIR`. Progress lines (embedding,
neighbour search, k-means) appear on a terminal; `--quiet` turns them off. Errors in the
command line or data print `error: <message>` (exit status 2); `--debug` shows the traceback.
"""
import argparse
import json
import os
import warnings

from tfdml.cli.common import add_common_arguments, run_cli, start_devices


def describe_best(run_dir, config):
    """What a run directory's best.keras is: "best-by-validation …" or "best-on-test …", with its epoch."""
    selection = "best-by-validation" if (config.get("dataset") or {}).get("validation_classes") else "best-on-test"
    try:
        with open(os.path.join(run_dir, "checkpoints", "best.json")) as handle:
            record = json.load(handle)
        selection += f", epoch {int(record['best_epoch']) + 1} ({record['monitor']} {float(record['best']):.4f})"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return selection


def _run_directory_model(run_dir):
    """(loaded Keras model, image size from config.yaml, which weights: e.g. "best.keras (best-by-validation, …)")
    of a run directory."""
    import yaml

    from tfdml.models.export import load_keras_model

    with open(os.path.join(run_dir, "config.yaml")) as handle:
        config = yaml.safe_load(handle)
    image_size = config["dataset"]["image_size"]
    best, final = os.path.join(run_dir, "best.keras"), os.path.join(run_dir, "final.keras")
    if os.path.exists(best):
        try:
            return load_keras_model(best), image_size, f"{best} ({describe_best(run_dir, config)})"
        except ValueError as error:
            if not os.path.exists(final):
                raise
            warnings.warn(f"{error} Falling back to {final!r}.", stacklevel=2)
    if os.path.exists(final):
        return load_keras_model(final), image_size, f"{final} (final, last epoch)"
    raise FileNotFoundError(f"No best.keras or final.keras in run directory {run_dir!r}.")


def _load(model_path):
    """(keras model or None, serving function or None, image size or None, channels or None, weights description)."""
    import tensorflow as tf

    from tfdml.models.export import load_exported, load_keras_model

    if os.path.isdir(model_path) and os.path.exists(os.path.join(model_path, "config.yaml")):
        model, image_size, weights = _run_directory_model(model_path)
        return model, None, image_size, int(model.inputs[0].shape[-1]), weights
    if model_path.endswith(".keras"):
        model = load_keras_model(model_path)
        return model, None, int(model.inputs[0].shape[1]), int(model.inputs[0].shape[-1]), model_path
    if os.path.isdir(model_path) and os.path.exists(os.path.join(model_path, "saved_model.pb")):
        loaded = load_exported(model_path)
        serving = loaded.signatures["serving_default"]
        stored = loaded.input_shape.numpy() if hasattr(loaded, "input_shape") else None
        image_size, channels = (int(stored[0]), int(stored[2])) if stored is not None else (None, None)
        return None, lambda images, training=False: serving(images=tf.cast(images, tf.float32))["embeddings"], \
            image_size, channels, f"{model_path} (SavedModel)"
    raise FileNotFoundError(f"{model_path!r} is not a run directory, .keras file or SavedModel.")


def default_tap(model):
    """The tap evaluated without --tap/--taps: "fc" (DEFAULT_TAP), "class" for a two-head model, else the last
    head tap (e.g. "pool" of a model without fc)."""
    from tfdml.models.embedding_model import DEFAULT_TAP

    for tap in (DEFAULT_TAP, "class"):
        if tap in model.taps:
            return tap
    return model.taps[-1]


def _run_log(model_path):
    """The training log (`log.csv`) of a run directory given as --model, else None."""
    path = os.path.join(model_path, "log.csv")
    return path if os.path.isdir(model_path) and os.path.isfile(path) else None


def build_parser(prog=None):
    """The `argparse` parser of `tfdml-evaluate` (`prog`: the program name shown in usage)."""
    parser = argparse.ArgumentParser(prog=prog or "tfdml-evaluate", description="Evaluate retrieval on a test split.")
    parser.add_argument("--model", required=True, help="run directory, .keras file or SavedModel directory")
    parser.add_argument("--dataset", default="digits", help="digits, cub200, cars196, sop or folder")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's input size")
    parser.add_argument("--tap", default=None, help="tap to evaluate (default: fc, or class for a two-head model)")
    parser.add_argument("--taps", default=None, help="'all' or a comma-separated list of taps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--output", default=None, help="write metrics JSON here")
    parser.add_argument("--report", default=None, help="write metrics.json and report.md into this directory")
    parser.add_argument("--tsne-points", type=int, default=2000,
                        help="--report: points per split in the joint t-SNE (t-SNE time grows with them)")
    parser.add_argument("--projector", default=None,
                        help="write TensorBoard Embedding Projector files (every evaluated tap) into this directory")
    parser.add_argument("--projector-points", type=int, default=1000,
                        help="--projector: test images in the projector (a uniform sample)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_common_arguments(parser, progress=False)
    return parser


def main(argv=None, prog=None):
    """Evaluates as the command line says; returns {tap: metrics}. Raises the errors `cli` turns into `error: …`."""
    args = build_parser(prog).parse_args(argv)
    if args.tsne_points < 2:
        raise ValueError(f"--tsne-points must be >= 2, got {args.tsne_points}.")
    if args.projector_points < 1:
        raise ValueError(f"--projector-points must be >= 1, got {args.projector_points}.")
    start_devices(args.debug)

    import tfdml
    from tfdml.metrics import format_table

    verbose = False if args.quiet else None
    model, serving, image_size, channels, weights = _load(args.model)
    image_size = args.image_size or image_size
    if image_size is None:
        raise ValueError(f"{args.model!r} does not record its input size (exported before tfdml stored it): "
                         "pass --image-size.")
    channels = channels or 3
    split = tfdml.data.load_split(args.dataset, "test", args.data_dir, image_size=image_size, channels=channels)
    data = tfdml.data.eval_pipeline(split, args.batch_size, image_size)
    ks = (1, 10, 100, 1000) if args.dataset == "sop" else (1, 2, 4, 8)
    if model is not None and hasattr(model, "taps"):
        taps = model.taps if args.taps == "all" else (args.taps.split(",") if args.taps else
                                                      [args.tap or default_tap(model)])
        unknown = [tap for tap in taps if tap not in model.taps + model.block_taps]
        if unknown:
            raise ValueError(f"--tap/--taps: the model has no tap {unknown}; its taps are "
                             f"{model.taps + model.block_taps}.")
        embedders = {tap: model.embedder(tap) for tap in taps}
    elif args.taps or args.tap:
        raise ValueError("Taps need a run directory or .keras file of a tfdml EmbeddingModel.")
    else:
        embedders = {"output": serving or model}
    results = {}
    train_data = None
    if args.report:
        train_split = tfdml.data.load_split(args.dataset, "train", args.data_dir, image_size=image_size,
                                            channels=channels)
        train_data = tfdml.data.eval_pipeline(train_split, args.batch_size, image_size)
    reports = []
    examples = None
    if args.projector:
        from tfdml.analysis.retrieval_examples import RetrievalExamples

        examples = RetrievalExamples(split, args.projector)
    for tap, embedder in embedders.items():
        embeddings, labels = tfdml.metrics.embed(embedder, data, verbose=verbose)
        if examples is not None:
            examples.log(tap, embeddings, labels, step=0)
        if args.report:
            train_embeddings, train_labels = tfdml.metrics.embed(embedder, train_data, verbose=verbose)
            directory = os.path.join(args.report, tap) if len(embedders) > 1 else args.report
            results[tap] = tfdml.analysis.write_report(
                directory, embeddings, labels, train_embeddings, train_labels, ks=ks,
                title=f"{weights} on {args.dataset} (test split), tap {tap}", run_log=_run_log(args.model),
                max_tsne_points=args.tsne_points,
                class_names=split.class_names, train_class_names=train_split.class_names)
            reports.append(os.path.join(directory, "report.md"))
        else:
            results[tap] = tfdml.metrics.evaluate_embeddings(embeddings, labels, ks=ks, metrics=("recall", "nmi"),
                                                             verbose=verbose)
    if args.report and model is not None and getattr(model, "heads", None):
        reports.append(_sharing_report(model, data, train_data, args, ks, verbose))
    projector = None
    if args.projector:
        from tfdml.analysis.projector import write_split_projector

        projector = write_split_projector(args.projector, embedders, split, image_size, args.projector_points,
                                          batch_size=args.batch_size, verbose=verbose)
    print(f"weights: {weights}")
    print(f"{split} (test split)")
    print(format_table(results, ks))
    comparison = _paper_comparison(args.model, args.dataset, results)
    if comparison is not None:
        print(comparison["text"])
        if args.report:
            with open(os.path.join(args.report, "paper_vs_run.md"), "w") as handle:
                handle.write(comparison["text"] + "\n")
            reports.append(os.path.join(args.report, "paper_vs_run.md"))
    if projector:
        print(f"projector: {os.path.abspath(projector)} (tensorboard --logdir {args.projector})")
    for report in reports:
        print(f"report: {os.path.abspath(report)}")
    if args.output:
        from tfdml.training.paper import PAPER_KEY

        written = dict(results, **({PAPER_KEY: comparison} if comparison is not None else {}))
        with open(args.output, "w") as handle:
            json.dump(written, handle, indent=2)
        print(f"metrics: {os.path.abspath(args.output)}")
    return results


MAX_GRID_IMAGES = 5000


def _paper_comparison(model_path, dataset, results):
    """The "paper vs this run" record (`tfdml.training.paper`) of a run directory whose config has a
    `paper` section, for the evaluated `dataset`; None otherwise."""
    path = os.path.join(model_path, "config.yaml")
    if not (os.path.isdir(model_path) and os.path.exists(path)):
        return None
    from tfdml.training.config import load_config
    from tfdml.training.paper import comparison_record

    config = load_config(path)
    config["dataset"]["name"] = dataset
    return comparison_record(config, results)


def _sharing_report(model, data, train_data, args, ks, verbose):
    """Sharing Matters analyses of a two-head model (`tfdml.analysis.write_sharing_report`) in <report>/sharing;
    returns the path of sharing.md."""
    import numpy as np

    import tfdml

    embeddings, train_embeddings = {}, {}
    for head in model.heads:
        embeddings[head], labels = tfdml.metrics.embed(model.embedder(head), data, verbose=verbose)
        train_embeddings[head], train_labels = tfdml.metrics.embed(model.embedder(head), train_data, verbose=verbose)
    # the neighbour grid needs the test images in memory: only for small test sets
    images = np.concatenate([np.asarray(batch[0]) for batch in data]) if len(labels) <= MAX_GRID_IMAGES else None
    directory = os.path.join(args.report, "sharing")
    tfdml.analysis.write_sharing_report(directory, embeddings, labels, train_embeddings, train_labels,
                                        history=_run_log(args.model), images=images, ks=ks)
    return os.path.join(directory, "sharing.md")


def cli(argv=None, prog=None):
    """Console entry point: runs `main`, returns the exit status."""
    return run_cli(main, argv, prog)


if __name__ == "__main__":
    raise SystemExit(cli())
