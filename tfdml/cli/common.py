"""Shared parts of the command-line tools: quiet device start-up, progress verbosity, user errors."""
import sys
import traceback
import warnings

from tfdml import _startup
from tfdml.data.datasets import MissingDependencyError
from tfdml.training.run_directory import RunDirectoryError
from tfdml.weights.load import WeightsDownloadError

# Errors caused by the command line, a config or the data: printed as one line (no traceback) unless --debug.
USER_ERRORS = (ValueError, FileNotFoundError, KeyError, RunDirectoryError, MissingDependencyError,
               WeightsDownloadError)
USAGE_ERROR_STATUS = 2


def add_common_arguments(parser, progress=True):
    """Adds `--debug` (and with `progress` the exclusive `--verbose` / `--quiet`) to an argparse parser."""
    if progress:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--verbose", action="store_true", help="a progress bar over the steps of each epoch")
        group.add_argument("--quiet", action="store_true", help="print only the final table")
    parser.add_argument("--debug", action="store_true",
                        help="full Python tracebacks and TensorFlow's start-up messages")


def progress_verbosity(args, stream=None):
    """`TrainingLoop.fit`'s verbose: 0 with --quiet, 1 (step bar) with --verbose or on a terminal, else 2 (a line
    per epoch)."""
    if getattr(args, "quiet", False):
        return 0
    if getattr(args, "verbose", False):
        return 1
    stream = sys.stdout if stream is None else stream
    return 1 if hasattr(stream, "isatty") and stream.isatty() else 2


def start_devices(debug=False):
    """Initialises TensorFlow's devices, hiding the CUDA-init noise of CPU machines when run as a tool."""
    import tensorflow as tf

    with _startup.filtered_stderr(not debug and _startup.cli_command()):
        tf.config.list_physical_devices()


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def run_cli(main, argv=None, prog=None):
    """Runs `main(argv, prog=prog)` as a console command and returns its exit status.

    User errors (`USER_ERRORS`) print `error: <message>` to stderr and return 2;
    Ctrl-C returns 130. With `--debug` in `argv`, errors raise with their traceback
    and warnings keep Python's format (file and line).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    format_warning = warnings.formatwarning
    if not debug:
        warnings.formatwarning = _one_line_warning
    try:
        main(argv, prog=prog)
    except USER_ERRORS as error:
        if debug:
            raise
        message = str(error) if not isinstance(error, KeyError) else f"missing key {error}"
        print(f"error: {message}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    except BrokenPipeError:  # e.g. `tfdml-train --list-configs | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = format_warning
    return 0
