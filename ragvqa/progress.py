"""The one progress bar of ragvqa: rich on a terminal, a plain line now and then in a log.

Every long job (encoding, KB builds, downloads, training, reranking, generation) reports through
`ProgressBar`, so they all look alike and none of them writes escape codes into a log file.
On a terminal it is a rich bar on stderr with the time left. When stderr is not a terminal
(CI, `2> log`, a pipe) a job that runs for longer than `LOG_INTERVAL` (30 s) writes one plain
line to stderr every `LOG_INTERVAL` seconds and one at its end, and nothing more often:

    encoding passages: 1200/50000 (2.4%), 40.0/s, 20m19s left
    encoding passages: 50000/50000 (100.0%), 40.0/s, done in 20m50s

(a line is written by the first `advance` or `update` after the interval has passed; a job
shorter than the interval writes nothing.)

    with ProgressBar("encoding passages", total=n) as bar:
        for batch in batches:
            ...
            bar.advance(len(batch))

`transfer=True` shows sizes and speed (downloads: totals in bytes); `info` is free text shown
after the bar (a training loss, a page count).

A wait of unknown length with nothing to count (a reader engine loading) is a `Spinner`, drawn
the same way on a terminal (with the seconds waited so far), so the user sees that something
is going on instead of a bar frozen at 0%; off a terminal it writes nothing:

    with Spinner("starting reader"):
        engine = load()

Only one of them is drawn at a time: a bar that starts inside a spinner (an index built on
first use while `ragvqa answer` starts up) hides the spinner until the bar is done.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

LOG_INTERVAL = 30.0  # seconds between two plain progress lines off a terminal

_drawn: list[Any] = []  # the displays drawn now, innermost last (only the last one is shown)
_drawn_lock = threading.Lock()


def _interactive() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def _push(live: Any) -> None:
    """Draw `live` (a rich Progress or Status), hiding the one drawn before it."""
    with _drawn_lock:
        if _drawn:
            _drawn[-1].stop()
        _drawn.append(live)
    live.start()


def _pop(live: Any) -> None:
    """Stop drawing `live`; the one it hid is drawn again."""
    live.stop()
    with _drawn_lock:
        if live in _drawn:
            was_last = _drawn[-1] is live
            _drawn.remove(live)
            if was_last and _drawn:
                _drawn[-1].start()


def _duration(seconds: float) -> str:
    """45s, 20m19s, 2h03m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # unreachable


def _count(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else f"{n:.1f}"


class ProgressBar:
    """A progress bar on stderr for one job: rich on a terminal, a plain line every
    `interval` seconds (and at the end) otherwise; a no-op when disabled.

    Args:
        label: What is being done ("encoding passages").
        total: Units of work, None when unknown (a stream).
        enabled: False to never draw (the caller's --quiet); None: draw when `total` is
            unknown or above 1 (a single step needs no bar).
        completed: Units already done (a resumed job).
        transfer: Show sizes and speed (`total` is in bytes).
        interval: Seconds between two plain lines off a terminal (default `LOG_INTERVAL`).
        clock: The clock of those lines (seconds; `time.monotonic`).
    """

    def __init__(
        self,
        label: str,
        total: float | None = None,
        *,
        enabled: bool | None = True,
        completed: float = 0,
        transfer: bool = False,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label, self.total, self.completed, self.transfer = label, total, completed, transfer
        self.info = ""
        wanted = bool(enabled if enabled is not None else (total is None or total > 1))
        self.shown = wanted and _interactive()
        self.logged = wanted and not self.shown  # plain lines to stderr, now and then
        self.interval = LOG_INTERVAL if interval is None else interval
        self._clock = clock
        self._started = self._last = 0.0
        self._first = completed  # units done before this run (not in the rate)
        self._lines = 0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if self.logged:
            self._started = self._last = self._clock()
        if not self.shown:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        counts = (
            (DownloadColumn(), TransferSpeedColumn()) if self.transfer else (MofNCompleteColumn(),)
        )
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            *counts,
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._bar.add_task(
            self.label, total=self.total, completed=self.completed, info=self.info
        )
        _push(self._bar)
        return self

    def advance(self, n: float = 1) -> None:
        """`n` more units done."""
        self.completed += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
        elif self.logged:
            self._tick()

    __call__ = advance

    def update(
        self,
        *,
        completed: float | None = None,
        total: float | None = None,
        info: str | None = None,
    ) -> None:
        """Set the units done, the total (when it becomes known, or changes: a download that
        restarts) and the text after the bar; what is not given stays as it was."""
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if info is not None:
            self.info = info
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, total=self.total, info=self.info)
        elif self.logged:
            self._tick()

    def _tick(self) -> None:
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            self._write(self.line(now))

    def line(self, now: float | None = None, *, end: str | None = None) -> str:
        """The plain progress line: label, done/total, rate and the time left, or with `end`
        ("done", "stopped") the time taken."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._started, 0.0)
        rate = (self.completed - self._first) / elapsed if elapsed > 0 else 0.0
        show = _size if self.transfer else _count
        parts = [f"{self.label}: {show(self.completed)}"]
        if self.total:
            parts[0] += f"/{show(self.total)} ({100 * self.completed / self.total:.1f}%)"
        else:
            parts[0] += " done"
        parts.append(f"{show(rate)}/s" if self.transfer else f"{rate:.1f}/s")
        if end is not None:
            parts.append(f"{end} {'in' if end == 'done' else 'after'} {_duration(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"{_duration((self.total - self.completed) / rate)} left")
        if self.info:
            parts.append(self.info)
        return ", ".join(parts)

    def _write(self, line: str) -> None:
        # a closed or replaced stream: progress is not worth failing the work for
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            self._lines += 1

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            _pop(self._bar)
            self._bar = None
        elif self.logged and self._lines:  # a long job: say where it ended
            self._write(self.line(end="done" if exc[0] is None else "stopped"))


class _Elapsed:
    """A spinner's text: its label and the seconds waited so far, rendered at every frame."""

    def __init__(self, label: str | Callable[[], str]):
        self.label, self.started = label, time.monotonic()

    def __rich__(self) -> Any:
        from rich.text import Text

        label = self.label() if callable(self.label) else self.label
        waited = time.monotonic() - self.started
        text = Text(f"{label}...")  # plain text: a label is never markup
        if waited >= 1:
            text.append(f" {_duration(waited)}", style="dim")
        return text


class Spinner:
    """A spinner with a label ("starting reader... 12s") on stderr while a step of unknown
    length runs; like `ProgressBar`, nothing is drawn when disabled or when stderr is no
    terminal, and the line is gone once the step is over (the bar that follows takes its
    place). `label` may be a function, read at every frame (a step that goes through phases)."""

    def __init__(self, label: str | Callable[[], str], *, enabled: bool = True):
        self.label = label
        self.shown = enabled and _interactive()
        self._status: Any = None

    def __enter__(self) -> Spinner:
        if self.shown:
            from rich.console import Console

            self._status = Console(stderr=True).status(_Elapsed(self.label), spinner="dots")
            _push(self._status)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._status is not None:
            _pop(self._status)
            self._status = None
