"""Quiet TensorFlow start-up for tfdml's command-line tools (imports nothing heavy).

TensorFlow's C++ libraries print start-up lines straight to file descriptor 2
before its logging is configured, whatever `TF_CPP_MIN_LOG_LEVEL` says (absl's
"All log messages before absl::InitializeLog()" notice, oneDNN / CUDA-stub info
lines, on CPU machines the failed `cuInit` error). When tfdml runs as a
command-line tool (`train.py`, `evaluate.py`, `sweep.py`, `tfdml-*`,
`python -m tfdml`) without `--debug` and `TF_CPP_MIN_LOG_LEVEL` is at least 2
(the tools' default), `filtered_stderr` drops exactly those lines while
TensorFlow loads and initialises its devices; every other line passes through
at once. Library users (`import tfdml`, e.g. in a notebook) get the same
filtering, with TensorFlow's device probe (`list_physical_devices`) inside it,
when they ask for quiet themselves: `TF_CPP_MIN_LOG_LEVEL` set to 2 or more
before tfdml imports TensorFlow (`quiet_requested`); otherwise they see
TensorFlow's output unchanged.
"""
import contextlib
import os
import re
import sys
import threading

CLI_SCRIPTS = ("train.py", "evaluate.py", "sweep.py", "tfdml-train", "tfdml-evaluate", "tfdml-sweep")
_NOISE = re.compile(
    r"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:. ]+\d+ [\w.]+:\d+\] .*"  # absl/TF info lines
    r"|E\d{4} [\d:. ]+\d+ [\w.]+:\d+\] Unable to register cu(?:DNN|FFT|BLAS) factory.*"
    r"|W\d{4} [\d:. ]+\d+ [\w.]+:\d+\] TF-TRT Warning: Could not find TensorRT.*)$")
_NO_GPU = re.compile(r"^E\d{4} [\d:. ]+\d+ [\w.]+:\d+\] failed call to cuInit.*$")
_OPTIONS_WITH_VALUE = ("-W", "-X", "-Q")


def cli_command(argv=None):
    """Whether the process is one of tfdml's command-line tools (`train.py`, `tfdml-train`, `python -m tfdml` …).

    Args:
        argv: the interpreter's command line (default `sys.orig_argv`).
    """
    argv = list(getattr(sys, "orig_argv", sys.argv) if argv is None else argv)
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg == "-m":
            return index + 1 < len(argv) and argv[index + 1] == "tfdml"
        if arg.startswith("-m"):
            return arg[2:] == "tfdml"
        if arg == "-c":
            return False
        if arg.startswith("-"):
            index += 2 if arg in _OPTIONS_WITH_VALUE else 1
            continue
        return os.path.basename(arg) in CLI_SCRIPTS
    return False


def prepare_cli(argv=None):
    """For a command-line tool: defaults `TF_CPP_MIN_LOG_LEVEL` to 2; returns whether to filter TensorFlow's
    start-up lines (a tool started without `--debug`)."""
    argv = list(getattr(sys, "orig_argv", sys.argv) if argv is None else argv)
    if not cli_command(argv):
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return "--debug" not in argv


def quiet_requested():
    """Whether a library user asked for quiet start-up: `TF_CPP_MIN_LOG_LEVEL` ≥ 2 is set in the
    environment and TensorFlow is not imported yet (its start-up lines are still to come)."""
    return "TF_CPP_MIN_LOG_LEVEL" in os.environ and _quiet_wanted() and "tensorflow" not in sys.modules


def _quiet_wanted():
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) >= 2
    except ValueError:
        return False


@contextlib.contextmanager
def filtered_stderr(active=True):
    """Drops TensorFlow's start-up noise from file descriptor 2 inside the block (see the module docstring).

    Args:
        active: filter at all (False: a no-op). Also a no-op when
            `TF_CPP_MIN_LOG_LEVEL` is below 2 (the user asked for TF's logs).

    Yields:
        The list of dropped lines.
    """
    dropped = []
    if not active or not _quiet_wanted():
        yield dropped
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    gpu_machine = os.path.exists("/dev/nvidiactl")

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                text = line.decode(errors="replace").rstrip("\r\n")
                if _NOISE.match(text) or (_NO_GPU.match(text) and not gpu_machine):
                    dropped.append(text)
                else:
                    os.write(saved, line)

    thread = threading.Thread(target=forward, name="tfdml-stderr-filter", daemon=True)
    thread.start()
    try:
        yield dropped
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's write end: the reader sees the end and finishes
        thread.join(timeout=10)
        os.close(saved)
