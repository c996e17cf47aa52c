"""`python -m tfdml <command> [arguments]`: tfdml's command-line tools (`train`, `evaluate`, `sweep`).

    python -m tfdml train --config ee_cub200 --output runs/cub
    python -m tfdml evaluate --model runs/cub --dataset cub200 --data-dir /data/CUB
    python -m tfdml sweep --config default --grid expansion.n_points=0,2 --output runs/sweep
    python -m tfdml <command> --help
"""
import importlib
import sys

from tfdml.cli import COMMANDS


def usage():
    """The text of `python -m tfdml` without a command: the commands and what each does."""
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: python -m tfdml {" + ",".join(COMMANDS) + "} [arguments]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "`python -m tfdml <command> --help` lists a command's arguments; the same commands are installed "
              "as tfdml-train, tfdml-evaluate, tfdml-sweep and tfdml-weights."]
    return "\n".join(lines)


def main(argv=None):
    """Runs the command named by `argv[0]`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(usage(), file=sys.stderr)
        print(f"error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    return importlib.import_module(f"tfdml.cli.{command}").cli(rest, prog=f"python -m tfdml {command}")


if __name__ == "__main__":
    sys.exit(main())
