"""Start-up timings, and the reader's engine started in a thread of its own.

A cold `ragvqa answer` spends most of its time before any stage runs: importing torch and
vLLM, loading the encoder, and starting the reader's engine, which is mostly waiting while
vLLM's engine processes start. Two things here make that visible and shorter:

- `StartupLog` records when each component's loading began and ended, in seconds since the
  process started, and which thread did it (`ragvqa answer --json` prints it as `startup`).
  It costs two clock reads per component.
- `StageClock` and `with_startup` put start-up apart from the stages' times (`answer`'s panel,
  `bench`'s table and metrics.json): a stage that waited for a component loses that time, so
  `generate` never includes the engine's start.
- `Background` builds a value in a daemon thread: the pipeline starts the reader's engine this
  way while the main thread loads the encoder, encodes and searches. An error of the build
  (a `UserError` naming the model, say) is raised again in the thread that asks for the value,
  so it reads the same as when the engine is started in the main thread.

The thread that starts the engine stays alive until the pipeline is closed (or the process
ends), because the engine's processes are asked to die with the thread that started them
(`ragvqa.readers.vllm_backend`, which reads the thread's `outlives_engine`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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


class StageClock(dict):
    """Stage timings (`{"encode": {"seconds": 0.8, "cached": False}, ...}`) that also note
    when each entry was written (`since_start()`): a stage's entry is written as it ends, so its
    window is [end - seconds, end], which `with_startup` compares with the start-up spans."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.ends: dict[str, float] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.ends[key] = since_start()


def with_startup(
    timings: Mapping[str, Any],
    log: StartupLog,
    *,
    since: float | None = None,
    until: float | None = None,
) -> dict[str, Any]:
    """`timings` with start-up apart: `{"startup": {"seconds", "components"}, <stage>: ...}`.

    Start-up is the time spent loading components (the spans of `log`) from `since` to `until`
    (default: the window of the `total` entry, i.e. a benchmark run; a component loaded before,
    by an earlier `answer` of the same pipeline, costs this run nothing): a span of this thread
    counts whole, a span of another thread (the reader's engine started in the background)
    only while a stage waited for it (the stage in which it ended). Each stage's seconds lose
    the start-up inside its window, so `generate` is generation alone, never the engine's
    start. `components`: each span's counted seconds (those under 5 ms left out). Timings
    without windows (not a `StageClock`) come back as they are."""
    ends = getattr(timings, "ends", None)
    if ends is None:
        return dict(timings)
    total = timings.get("total")
    if since is None:
        since = ends["total"] - total["seconds"] if total and "total" in ends else 0.0
    if until is None:
        until = ends.get("total", since_start())
    windows = {
        stage: (ends[stage] - float(entry.get("seconds") or 0.0), ends[stage])
        for stage, entry in timings.items()
        if stage != "total" and stage in ends and isinstance(entry, Mapping)
    }
    here = threading.current_thread().name
    counted: dict[str, list[tuple[float, float]]] = {}
    for name, span in log.to_json().items():
        if span["end"] <= since or span["start"] >= until:
            continue
        if span["thread"] == here:
            parts = [(max(span["start"], since), min(span["end"], until))]
        else:  # in the background: the time a stage waited for it
            parts = [
                (max(span["start"], a), span["end"])
                for a, b in windows.values()
                if a <= span["end"] <= b
            ]
        if parts := [(a, b) for a, b in parts if b > a]:
            counted[name] = parts
    loading = [part for parts in counted.values() for part in parts]
    out: dict[str, Any] = {
        "startup": {
            "seconds": round(_covered(loading), 3),
            "components": {  # each as shown, to the hundredth: those that took no time left out
                name: round(seconds, 3)
                for name, parts in counted.items()
                if (seconds := _covered(parts)) >= 0.005
            },
        }
    }
    for stage, entry in timings.items():
        if stage in windows:
            a, b = windows[stage]
            inside = _covered([(max(x, a), min(y, b)) for x, y in loading])
            entry = {**entry, "seconds": round(max(float(entry["seconds"]) - inside, 0.0), 3)}
        out[stage] = entry
    return out


def _covered(parts: Sequence[tuple[float, float]]) -> float:
    """Seconds covered by the union of the intervals (empty ones ignored)."""
    covered, reach = 0.0, float("-inf")
    for a, b in sorted(p for p in parts if p[1] > p[0]):
        if b > reach:
            covered += b - max(a, reach)
            reach = b
    return covered
