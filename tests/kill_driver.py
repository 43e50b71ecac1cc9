"""Run `ragvqa ARGS...` in this process and SIGKILL it in the middle of one stage's write.

Usage: python kill_driver.py STAGE ragvqa-args...

STAGE is where the process dies, half-way through writing that stage's output, as a kill -9
from outside would leave it: `encode` (the query-vector cache), `search` / `rerank` (their
result caches), `generate` (the second generation chunk's journal append, half a line
written) or `finish` (predictions.jsonl). `none` runs to the end.
"""

from __future__ import annotations

import os
import signal
import sys

import ragvqa.run.runner as runner
from ragvqa.cli.main import app
from ragvqa.run.cache import StageCache
from ragvqa.run.journal import Journal


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def half_written(path) -> None:
    """A temporary sibling with half a record in it, as an interrupted atomic write leaves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / f".{path.name}.killed.tmp").write_text('{"half": ')


def install(stage: str) -> None:
    if stage in ("search", "rerank"):
        real = StageCache.save_results

        def save_results(self, name, key, results):
            if name == stage:
                half_written(self.path(name, key, ".jsonl"))
                die()
            return real(self, name, key, results)

        StageCache.save_results = save_results
    elif stage == "encode":

        def save_vectors(self, key, vectors, present):
            half_written(self.path("encode", key, ".npz"))
            die()

        StageCache.save_vectors = save_vectors
    elif stage == "generate":
        real_append = Journal.append
        calls = []

        def append(self, key, answers):
            calls.append(1)
            if len(calls) == 2:
                line = f'{{"key": "{key}", "record": {{"data_id": "{answers[0].query_id}"'
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line)
                die()
            real_append(self, key, answers)

        Journal.append = append
    elif stage == "finish":
        real_write = runner.write_jsonl

        def write_jsonl(path, rows):
            if str(path).endswith("predictions.jsonl"):
                half_written(path)
                die()
            real_write(path, rows)

        runner.write_jsonl = write_jsonl
    elif stage != "none":
        raise SystemExit(f"unknown stage {stage}")


if __name__ == "__main__":
    install(sys.argv[1])
    app(sys.argv[2:], prog_name="ragvqa")
