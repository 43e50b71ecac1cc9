"""Start-up timings, and the reader's engine started in a thread of its own.

A cold `ragvqa answer` spends most of its time before any stage runs: importing torch and
vLLM, loading the encoder, and starting the reader's engine, which is mostly waiting while
vLLM's engine processes start. Two things here make that visible and shorter:

- `StartupLog` records when each component's loading began and ended, in seconds since the
  process started, and which thread did it (`ragvqa answer --json` prints it as `startup`).
  It costs two clock reads per component.
- `Background` builds a value in a daemon thread: the pipeline starts the reader's engine this
  way while the main thread loads the encoder, encodes and searches. An error of the build
  (a `UserError` naming the model, say) is raised again in the thread that asks for the value,
  so it reads the same as when the engine is started in the main thread.

The thread that starts the engine stays alive until the pipeline is closed (or the process
ends), because the engine's processes are asked to die with the thread that started them
(`ragvqa.generate.vllm_backend`, which reads the thread's `outlives_engine`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any


def process_age() -> float | None:
    """Seconds since this process started, from the kernel (None where /proc is missing)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # the name may hold spaces
        ticks = int(fields[19])  # field 22, starttime: clock ticks after boot
        started = ticks / os.sysconf("SC_CLK_TCK")
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, IndexError, ValueError, AttributeError):
        return None


_AGE = process_age()
_ORIGIN = time.perf_counter() - (_AGE or 0.0)  # perf_counter() at the process's start


def since_start() -> float:
    """Seconds since the process started (since this module was imported where unknown)."""
    return time.perf_counter() - _ORIGIN


class StartupLog:
    """Named spans (start, end, thread) of a pipeline's start-up; safe to write from threads."""

    def __init__(self) -> None:
        self._spans: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def record(self, name: str, start: float, end: float) -> None:
        """A span from `start` to `end` (both `since_start()` values), by the calling thread."""
        span = {
            "start": round(start, 3),
            "end": round(end, 3),
            "seconds": round(end - start, 3),
            "thread": threading.current_thread().name,
        }
        with self._lock:
            self._spans[name] = span

    @contextlib.contextmanager
    def span(self, name: str, start: float | None = None) -> Iterator[None]:
        """Time the block as span `name`, from `start` (default: now) to its end (recorded
        even when the block raises)."""
        start = since_start() if start is None else start
        try:
            yield
        finally:
            self.record(name, start, since_start())

    def to_json(self) -> dict[str, dict[str, Any]]:
        """The spans in the order they began."""
        with self._lock:
            spans = dict(self._spans)
        return dict(sorted(spans.items(), key=lambda item: item[1]["start"]))


class Background:
    """`build()` run in a daemon thread named `ragvqa-<name>`, started at once.

    `result()` waits for it and returns the value, or raises the build's exception. `close()`
    lets the thread end; a value nobody took by then is closed by the thread (once built),
    so an engine started for a query that failed first is not left running."""

    def __init__(self, name: str, build: Callable[[], Any]):
        self._build = build
        self._built = threading.Event()
        self._closed = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._taken = False
        self.thread = threading.Thread(target=self._run, name=f"ragvqa-{name}", daemon=True)
        self.thread.outlives_engine = True  # type: ignore[attr-defined]
        self.thread.background = self  # type: ignore[attr-defined]
        self.thread.start()

    def _run(self) -> None:
        try:
            self._value = self._build()
        except BaseException as exc:  # raised again by result(), in the caller's thread
            self._error = exc
            return  # nothing was started that must outlive the build
        finally:
            self._built.set()
        self._closed.wait()  # the engine's processes die with this thread: keep it alive
        if not self._taken and hasattr(self._value, "close"):
            self._value.close()

    def result(self) -> Any:
        """The built value (waiting for it); the build's exception, raised here."""
        self._built.wait()
        if self._error is not None:
            raise self._error
        self._taken = True
        return self._value

    def close(self) -> None:
        """Let the thread end (without waiting for a build still running)."""
        self._closed.set()

    @property
    def building(self) -> bool:
        return not self._built.is_set()


def still_building() -> bool:
    """Whether a `Background` build (an engine starting) is still running in this process.
    Python's shutdown ends such a daemon thread wherever it is, and one inside torch's C++ code
    then aborts the process ("FATAL: exception not rethrown"); the CLI leaves by `os._exit`
    instead (the engine's processes die with it)."""
    return any(
        t.name.startswith("ragvqa-")
        and getattr(t, "background", None) is not None
        and t.background.building
        for t in threading.enumerate()
    )
