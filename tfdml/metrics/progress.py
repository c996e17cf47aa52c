"""Progress lines for long evaluation steps (embedding, neighbour search, clustering).

Shown on stderr only when it is a terminal (or when asked with `verbose=True`);
silent with `verbose=False`, in logs and under pytest.
"""
import contextlib
import sys
import time

_silenced = 0


@contextlib.contextmanager
def silenced():
    """Within this context no `Progress` line is shown (e.g. evaluation inside `model.fit`)."""
    global _silenced
    _silenced += 1
    try:
        yield
    finally:
        _silenced -= 1


class Progress:
    """A one-line progress indicator: `label: done/total (elapsed)`, redrawn in place.

    Args:
        label: what is being done, e.g. "embedding".
        total: number of steps, or None when unknown.
        verbose: True = always, False = never, None = only when `stream` is a terminal.
        stream: output stream (default: sys.stderr).
        interval: minimum seconds between redraws.
    """

    def __init__(self, label, total=None, verbose=None, stream=None, interval=0.5):
        self.stream = stream if stream is not None else sys.stderr
        if verbose is None:
            verbose = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = bool(verbose) and not _silenced
        self.label, self.total, self.interval = label, total, interval
        self.start = self.last = time.perf_counter()
        self.shown = False

    def __call__(self, done, total=None):
        """Reports `done` steps (of `total`, if given here)."""
        if not self.enabled:
            return
        self.total = total if total is not None else self.total
        now = time.perf_counter()
        if now - self.last < self.interval and (self.total is None or done < self.total):
            return
        self.last = now
        of = f"/{self.total}" if self.total else ""
        self.stream.write(f"\r{self.label}: {done}{of} ({now - self.start:.0f} s)")
        self.stream.flush()
        self.shown = True

    def close(self):
        """Ends the line with the total time."""
        if self.enabled and self.shown:
            self.stream.write(f"\r{self.label}: done in {time.perf_counter() - self.start:.1f} s\n")
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
