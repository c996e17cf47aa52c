"""Evaluate a trained model on a dataset's test split.

    python evaluate.py --model runs/default --dataset digits
    python evaluate.py --model runs/default --dataset digits --taps all
    python evaluate.py --model runs/default/saved_model --dataset digits
    python evaluate.py --model model.keras --dataset cub200 --data-dir /data/CUB --tap pool

`--model` is a run directory (uses best.keras, else final.keras, and the run's
config.yaml for the image size), a `.keras` file, or a SavedModel exported by
`tfdml.export`. Prints Recall@K (1, 2, 4, 8; 1, 10, 100, 1000 for sop) and NMI;
`--taps all` prints every tap side by side (Vo & Hays Table 3 style).
`--output FILE` writes the metrics as JSON; `--report DIR` writes, per tap,
metrics.json (every metric of `tfdml.metrics.evaluate_embeddings`), the analysis
plots (spectrum, same-vs-different, distance heatmap, synthetic queries, joint
train/test t-SNE) and a report.md embedding them (`tfdml.analysis.write_report`).
"""
import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _load(model_path):
    """(keras model or None, serving function or None, image size or None)."""
    import keras
    import tensorflow as tf
    import yaml

    import tfdml  # noqa: F401  (registers the Keras classes stored in .keras files)

    image_size = None
    if os.path.isdir(model_path) and os.path.exists(os.path.join(model_path, "config.yaml")):
        with open(os.path.join(model_path, "config.yaml")) as handle:
            image_size = yaml.safe_load(handle)["dataset"]["image_size"]
        for name in ("best.keras", "final.keras"):
            if os.path.exists(os.path.join(model_path, name)):
                model_path = os.path.join(model_path, name)
                break
        else:
            raise FileNotFoundError(f"No best.keras or final.keras in run directory {model_path!r}.")
    if model_path.endswith(".keras"):
        if not os.path.exists(model_path):
            raise FileNotFoundError(f"Model file not found: {model_path!r}.")
        model = keras.models.load_model(model_path)
        return model, None, image_size or int(model.inputs[0].shape[1])
    if os.path.exists(os.path.join(model_path, "saved_model.pb")):
        serving = tf.saved_model.load(model_path).signatures["serving_default"]
        return None, lambda images, training=False: serving(images=tf.cast(images, tf.float32))["embeddings"], \
            image_size
    raise FileNotFoundError(f"{model_path!r} is not a run directory, .keras file or SavedModel.")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate retrieval on a test split.")
    parser.add_argument("--model", required=True, help="run directory, .keras file or SavedModel directory")
    parser.add_argument("--dataset", default="digits", help="digits, cub200, cars196, sop or folder")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's input size")
    parser.add_argument("--tap", default=None, help="tap to evaluate (default: the model output)")
    parser.add_argument("--taps", default=None, help="'all' or a comma-separated list of taps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--output", default=None, help="write metrics JSON here")
    parser.add_argument("--report", default=None, help="write metrics.json and report.md into this directory")
    args = parser.parse_args(argv)

    import tfdml
    from tfdml.training.runner import format_table

    model, serving, image_size = _load(args.model)
    image_size = args.image_size or image_size
    if image_size is None:
        raise ValueError("--image-size is needed for a SavedModel outside its run directory.")
    split = tfdml.data.load_split(args.dataset, "test", args.data_dir, image_size=image_size)
    data = tfdml.data.eval_pipeline(split, args.batch_size, image_size)
    ks = (1, 10, 100, 1000) if args.dataset == "sop" else (1, 2, 4, 8)
    if model is not None and hasattr(model, "taps"):
        taps = model.taps if args.taps == "all" else (args.taps.split(",") if args.taps else [args.tap or "fc"])
        embedders = {tap: model.embedder(tap) for tap in taps}
    elif args.taps or args.tap:
        raise ValueError("Taps need a run directory or .keras file of a tfdml EmbeddingModel.")
    else:
        embedders = {"output": serving or model}
    results = {}
    train_data = None
    if args.report:
        train_split = tfdml.data.load_split(args.dataset, "train", args.data_dir, image_size=image_size)
        train_data = tfdml.data.eval_pipeline(train_split, args.batch_size, image_size)
    for tap, embedder in embedders.items():
        embeddings, labels = tfdml.metrics.embed(embedder, data)
        if args.report:
            train_embeddings, train_labels = tfdml.metrics.embed(embedder, train_data)
            directory = os.path.join(args.report, tap) if len(embedders) > 1 else args.report
            results[tap] = tfdml.analysis.write_report(
                directory, embeddings, labels, train_embeddings, train_labels, ks=ks,
                title=f"{args.model} on {args.dataset} (test split), tap {tap}")
        else:
            results[tap] = tfdml.metrics.evaluate_embeddings(embeddings, labels, ks=ks, metrics=("recall", "nmi"))
    print(f"{split}")
    print(format_table(results, ks))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
