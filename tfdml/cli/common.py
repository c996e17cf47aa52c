"""Shared parts of the command-line tools: quiet device start-up, progress verbosity, user errors, signals."""
import contextlib
import errno
import os
import re
import signal
import socket
import sys
import threading
import traceback
import warnings

from tfdml import _startup
from tfdml.data.datasets import MissingDependencyError
from tfdml.training.run_directory import RunDirectoryError
from tfdml.training.strategy import ClusterTimeoutError
from tfdml.weights.load import WeightsDownloadError

# Errors caused by the command line, a config or the data: printed as one line (no traceback) unless --debug.
USER_ERRORS = (ValueError, FileNotFoundError, KeyError, RunDirectoryError, MissingDependencyError,
               WeightsDownloadError, ClusterTimeoutError)
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


# OSError numbers of a full, read-only or forbidden output location.
_DISK_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT}


def user_error_message(error):
    """The one-line message of a user error (command line, config, data, output location), else None.

    User errors: `USER_ERRORS`; an `OSError` of a forbidden, read-only or full
    location; a TensorFlow error raised by a file that cannot be written or an
    image that cannot be decoded (the first line of its message).
    """
    if isinstance(error, KeyError):
        return f"missing key {error}"
    if isinstance(error, USER_ERRORS):
        return str(error)
    if isinstance(error, OSError) and error.errno in _DISK_ERRNOS:
        where = f" {error.filename!r}" if error.filename else ""
        return f"cannot write{where}: {error.strerror or error}. Choose another --output or free space."
    import tensorflow as tf

    if isinstance(error, tf.errors.OpError):
        text = error.message or ""
        match = re.search(r"(Cannot decode image .*?|Image file not found: .*?)(?:\n|$)", text)
        if match:
            return match.group(1).strip()
        if isinstance(error, (tf.errors.PermissionDeniedError, tf.errors.ResourceExhaustedError)) or \
                re.search(r"No space left|Read-only file system|Permission denied", text):
            first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
            first = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", first).strip()
            return f"cannot write: {first}. Choose another --output or free space."
    return None


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


#: Seconds a tool has to end by itself after SIGTERM / Ctrl-C before it is ended forcibly.
SIGNAL_GRACE_SECONDS = 20.0


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. a scheduler's preemption) arrived; raised in the main thread like Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def ending_on_signals(grace=SIGNAL_GRACE_SECONDS):
    """SIGTERM raises `Terminated` (a `KeyboardInterrupt`) in the main thread, like Ctrl-C does.

    The exception unwinds the run (the lock is released; checkpoints are
    written whole, so the last one stays usable). Python runs signal handlers
    only between bytecodes: if the main thread is blocked in TensorFlow, a
    watcher thread ends the process `grace` seconds after the signal (at once
    after a second one) with status 128 + signal number. A no-op outside the
    main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    done = threading.Event()

    def watch():
        while True:
            try:
                data = reader.recv(16)
            except OSError:
                return
            if done.is_set() or not data:
                return
            signals = [number for number in data if number in (signal.SIGTERM, signal.SIGINT)]
            if not signals:
                continue
            reader.settimeout(grace)  # the main thread has `grace` seconds; a second signal ends at once
            try:
                reader.recv(16)
            except TimeoutError:
                pass
            except OSError:
                return
            if done.is_set():
                return
            status = 128 + signals[-1]
            print(f"{signal.Signals(signals[-1]).name}: ending the process (status {status}).", file=sys.stderr,
                  flush=True)
            os._exit(status)

    watcher = threading.Thread(target=watch, name="tfdml-signal-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(previous_fd)
        try:
            reader.shutdown(socket.SHUT_RDWR)  # wakes the watcher, which then returns
        except OSError:
            pass
        signal.signal(signal.SIGTERM, previous_term)
        writer.close()
        reader.close()


def run_cli(main, argv=None, prog=None):
    """Runs `main(argv, prog=prog)` as a console command and returns its exit status.

    User errors (see `user_error_message`) print `error: <message>` to stderr
    and return 2; Ctrl-C returns 130, SIGTERM 143 (see `ending_on_signals`).
    With `--debug` in `argv`, errors raise with their traceback
    and warnings keep Python's format (file and line).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    format_warning = warnings.formatwarning
    if not debug:
        warnings.formatwarning = _one_line_warning
    try:
        with ending_on_signals():
            main(argv, prog=prog)
    except BrokenPipeError:  # e.g. `tfdml-train --list-configs | head`
        sys.stderr.close()
        return 0
    except Exception as error:  # noqa: BLE001  (user errors become one line; others keep their traceback)
        message = user_error_message(error)
        if debug or message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        if _startup.cli_command() and type(error).__module__.startswith("tensorflow"):
            # An error inside a tf.data pipeline can leave its threads blocked on the interpreter lock at exit.
            sys.stdout.flush()
            os._exit(USAGE_ERROR_STATUS)
        return USAGE_ERROR_STATUS
    except KeyboardInterrupt as interrupt:
        if debug:
            traceback.print_exc()
        terminated = isinstance(interrupt, Terminated)
        print("terminated (SIGTERM)" if terminated else "interrupted", file=sys.stderr, flush=True)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        warnings.formatwarning = format_warning
    return 0
