"""The batching worker: one background thread that runs every engine call of the server.

Requests do not call the pipeline themselves: they `submit` a job and wait on its future. The
worker takes the first queued job, keeps collecting for a short window (`window_s`, 10 ms by
default) or until `max_batch` jobs are in hand, groups them by key (jobs with equal keys can
share one call: the same template and top_k) and runs each group as one call. While a call
runs, new jobs queue up and are taken together when it returns, so 32 clients waiting at once
cost about one batched call instead of 32.

One thread also means the pipeline (a vLLM engine, a torch encoder) is only ever used from one
thread, which none of them promises to support otherwise.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from ragvqa.errors import UserError

# run(key, items) -> one result per item, in order; a result that is an exception fails only
# its own job, an exception raised by run fails the whole group
RunGroup = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


@dataclass
class Job:
    """One request's work: its group key, its input and the future its result goes to."""

    key: Hashable
    item: Any
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.perf_counter)
    waited: float = 0.0  # seconds from submit to the start of its call
    batch: int = 0  # how many jobs its call held


@dataclass
class BatchStats:
    """What the worker has done: requests, engine calls and the largest call."""

    requests: int = 0
    calls: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "calls": self.calls,
            "largest_batch": self.largest,
            "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
        }


class Batcher:
    """Collects submitted jobs into batches and runs them on one background thread."""

    def __init__(self, run: RunGroup, *, window_s: float = 0.01, max_batch: int = 32):
        if max_batch < 1 or window_s < 0:
            raise ValueError("max_batch must be >= 1 and window_s >= 0")
        self.run, self.window_s, self.max_batch = run, window_s, max_batch
        self.stats = BatchStats()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ragvqa-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0, *, cancel: BaseException | None = None) -> None:
        """End the thread: after the jobs already queued, or, with `cancel`, failing them with
        that error (the call in progress finishes). Waits at most `timeout` seconds: a call
        that takes longer is left to its (daemon) thread, so a server stops on time."""
        if self._thread is not None:
            if cancel is not None:
                self._drain(cancel)
            self._queue.put(None)
            self._thread.join(timeout)
            if cancel is not None:
                self._drain(cancel)  # jobs that came in meanwhile
            self._thread = None

    def _drain(self, error: BaseException) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                _settle(job.future, error)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, key: Hashable, item: Any) -> Job:
        """Queue one job; its `future` holds the result (or the exception) when it has run."""
        if self._thread is None:
            raise RuntimeError("the batcher is not running")
        job = Job(key, item)
        self._queue.put(job)
        return job

    # -- the worker thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stopping = self._collect(first)
            self._run_jobs(jobs)
            if stopping:
                return

    def _collect(self, first: Job) -> tuple[list[Job], bool]:
        """The first job and those that arrive within the window (at most `max_batch`)."""
        jobs, deadline = [first], time.perf_counter() + self.window_s
        while len(jobs) < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                job = self._queue.get(block=remaining > 0, timeout=max(remaining, 0.0) or None)
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _run_jobs(self, jobs: list[Job]) -> None:
        groups: dict[Hashable, list[Job]] = {}
        jobs = [job for job in jobs if not job.future.cancelled()]  # its request is gone
        for job in jobs:
            groups.setdefault(job.key, []).append(job)
        self.stats.requests += len(jobs)
        for key, group in groups.items():
            started = time.perf_counter()
            for job in group:
                job.waited, job.batch = started - job.queued, len(group)
            self.stats.calls += 1
            self.stats.largest = max(self.stats.largest, len(group))
            self.stats.sizes[len(group)] = self.stats.sizes.get(len(group), 0) + 1
            self._run_group(key, group)

    def _run_group(self, key: Hashable, group: list[Job]) -> None:
        try:
            results = list(self.run(key, [job.item for job in group]))
            if len(results) != len(group):
                raise RuntimeError(f"{len(results)} results for {len(group)} jobs")
        except Exception as exc:  # the server stays up; every job of the group gets the error
            if not _expected(exc):
                traceback.print_exc(file=sys.stderr)
            for job in group:
                _settle(job.future, exc)
            return
        for job, result in zip(group, results, strict=True):
            _settle(job.future, result)


def _settle(future: Future, result: Any) -> None:
    """Give a job its result (an exception fails it); a job whose request was cancelled (the
    server stopping) takes none."""
    if future.done():
        return
    with contextlib.suppress(InvalidStateError):  # cancelled meanwhile: nobody waits for it
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _expected(exc: Exception) -> bool:
    """Errors that are the request's fault (reported to the client, no traceback)."""
    return isinstance(exc, UserError)
