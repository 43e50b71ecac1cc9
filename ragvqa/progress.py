"""The one progress bar of ragvqa: rich on stderr, with the time left; silent off a terminal.

Every long job (encoding, KB builds, downloads, training, reranking, generation) reports through
`ProgressBar`, so they all look alike and none of them writes escape codes into a log file:
when stderr is not a terminal (CI, `2> log`, a pipe) nothing is drawn at all.

    with ProgressBar("encoding passages", total=n) as bar:
        for batch in batches:
            ...
            bar.advance(len(batch))

`transfer=True` shows sizes and speed (downloads: totals in bytes); `info` is free text shown
after the bar (a training loss, a page count).

A wait of unknown length with nothing to count (a reader engine loading) is a `Spinner`, drawn
the same way, so the user sees that something is going on instead of a bar frozen at 0%:

    with Spinner("starting reader"):
        engine = load()
"""

from __future__ import annotations

import sys
from typing import Any


def _interactive() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


class ProgressBar:
    """A progress bar on stderr for one job; a no-op when disabled or stderr is no terminal.

    Args:
        label: What is being done ("encoding passages").
        total: Units of work, None when unknown (a stream).
        enabled: False to never draw (the caller's --quiet); None: draw when `total` is
            unknown or above 1 (a single step needs no bar).
        completed: Units already done (a resumed job).
        transfer: Show sizes and speed (`total` is in bytes).
    """

    def __init__(
        self,
        label: str,
        total: float | None = None,
        *,
        enabled: bool | None = True,
        completed: float = 0,
        transfer: bool = False,
    ):
        self.label, self.total, self.completed, self.transfer = label, total, completed, transfer
        self.info = ""
        wanted = enabled if enabled is not None else (total is None or total > 1)
        self.shown = bool(wanted) and _interactive()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
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
        self._bar.start()
        self._task = self._bar.add_task(
            self.label, total=self.total, completed=self.completed, info=self.info
        )
        return self

    def advance(self, n: float = 1) -> None:
        """`n` more units done."""
        self.completed += n
        if self._bar is not None:
            self._bar.advance(self._task, n)

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

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class Spinner:
    """A spinner with a label ("starting reader...") on stderr while a step of unknown length
    runs; like `ProgressBar`, nothing is drawn when disabled or when stderr is no terminal, and
    the line is gone once the step is over (the bar that follows takes its place)."""

    def __init__(self, label: str, *, enabled: bool = True):
        self.label = label
        self.shown = enabled and _interactive()
        self._status: Any = None

    def __enter__(self) -> Spinner:
        if self.shown:
            from rich.console import Console
            from rich.text import Text

            label = Text(f"{self.label}...")  # plain text: a label is never markup
            self._status = Console(stderr=True).status(label, spinner="dots")
            self._status.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
