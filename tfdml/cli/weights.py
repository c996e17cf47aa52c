"""`tfdml-weights` (`python -m tfdml weights`): the published ImageNet checkpoints, and offline conversion.

    tfdml-weights list                                          # backbone, source, URL, checksum, top-1, papers
    tfdml-weights convert resnet50 resnet50-19c8e357.pth resnet50.weights.h5

`convert` reads a PyTorch (`.pth`/`.pt`/`.bin`/`.ckpt`), `.safetensors` or
MXNet `.params` state dict with numpy (no torch or MXNet needed; `--source
gluoncv/googlenet` for gluoncv's tensor names), checks that every tensor fits
the backbone, and writes Keras weights that `model.weights=OUT.weights.h5`
loads. Note that weights keep their source's input normalisation: a model
built with `weights=OUT.weights.h5` uses the backbone's default preprocessing
(use the source name to get the source's).
To use a published file on a machine without network access, either pass its
path as `model.weights` or copy it into the weights cache (`tfdml-weights list`
prints the directory), where `weights: imagenet` finds it.
"""
import argparse
import os

from tfdml.cli.common import add_common_arguments, run_cli


def build_parser(prog=None):
    """The `argparse` parser of `tfdml-weights` and its `list` and `convert` commands."""
    parser = argparse.ArgumentParser(prog=prog or "tfdml-weights",
                                     description="Published ImageNet checkpoints of tfdml's backbones.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the known checkpoints (backbone, source, URL, checksum, top-1, papers)")
    add_common_arguments(listing, progress=False)
    convert = commands.add_parser("convert", help="convert a PyTorch / safetensors checkpoint to .weights.h5")
    convert.add_argument("backbone", help="a tfdml backbone with a PyTorch layout, e.g. resnet50")
    convert.add_argument("checkpoint", help="the state dict file (.pth, .pt, .bin, .ckpt, .safetensors)")
    convert.add_argument("output", help="the Keras weights file to write (ends in .weights.h5)")
    convert.add_argument("--image-size", type=int, default=224, help="input size the backbone is built at "
                                                                     "(weights do not depend on it)")
    convert.add_argument("--source", help="the published source the file comes from, for files with another "
                                          "framework's tensor names (e.g. gluoncv/googlenet for its .params)")
    add_common_arguments(convert, progress=False)
    return parser


def source_table():
    """Rows (backbone, source, imagenet default?, URL, sha256 prefix, top-1, papers) of every known checkpoint."""
    from tfdml.weights.sources import IMAGENET_DEFAULTS, SOURCES

    rows = []
    for source in sorted(SOURCES.values(), key=lambda s: (s.backbone, s.name)):
        default = IMAGENET_DEFAULTS.get(source.backbone) == source.name
        rows.append((source.backbone, source.name + (" (imagenet)" if default else ""), source.url,
                     source.hash_prefix or "-", f"{source.top1:.3f}", "; ".join(source.papers) or "-"))
    return rows


def _print_table(rows, header):
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(value).ljust(width) for value, width in zip(row, widths)).rstrip())


def convert_checkpoint(backbone, checkpoint, output, image_size=224, source=None):
    """Converts `checkpoint` into `output` (Keras weights of tfdml backbone `backbone`); returns `output`.

    `source` (a source name) applies that source's tensor-name translation (gluoncv's `.params`).
    """
    if not str(output).endswith(".weights.h5"):
        raise ValueError(f"output={output!r}: Keras weights files end in .weights.h5.")
    from tfdml.models.backbones import backbone_spec
    from tfdml.weights.load import load_checkpoint

    spec = backbone_spec(backbone)
    if spec is None or spec.torch_layers is None:
        raise ValueError(f"backbone={backbone!r} has no PyTorch layout to convert from.")
    rename = None
    if source is not None:
        from tfdml.weights.sources import resolve_source

        rename = resolve_source(backbone, source).rename
    model = spec.constructor((image_size, image_size, 3))
    load_checkpoint(model, spec, checkpoint, backbone, rename=rename)
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    model.save_weights(output, overwrite=True)
    return output


def main(argv=None, prog=None):
    """`tfdml-weights`: `list` prints the known checkpoints (and returns their rows), `convert`
    writes a PyTorch / safetensors checkpoint as a Keras `.weights.h5` file (and returns its path)."""
    args = build_parser(prog).parse_args(argv)
    if args.command == "list":
        from tfdml.weights.load import CACHE_ENV, cache_dir

        rows = source_table()
        _print_table(rows, ("backbone", "source", "url", "sha256", "top-1", "papers"))
        print(f"\ncache: {cache_dir()} (${CACHE_ENV}); weights: imagenet = the source marked (imagenet).")
        return rows
    path = convert_checkpoint(args.backbone, args.checkpoint, args.output, args.image_size, args.source)
    print(f"wrote {path} ({args.backbone} from {os.path.basename(args.checkpoint)})")
    return path


def cli(argv=None, prog=None):
    """Console entry point: runs `main`, returns the exit status."""
    return run_cli(main, argv, prog)


if __name__ == "__main__":
    raise SystemExit(cli())
