"""Benchmark plug-ins: one module per benchmark, found by name through `get_benchmark`.

Shipped: `infoseek` (InfoSeek val), `evqa` (Encyclopedic-VQA test), `wn-wiki` (WordNet glosses
answered from Wikipedia leads). Add one with
`ragvqa.registry.BENCHMARKS.register(name, "package.module:Class")`, or from another package
through the `ragvqa.benchmarks` entry-point group: `bench`, `score` and `compare` then take it,
with its file roles, unchanged. See docs/benchmarks.md.
"""

from __future__ import annotations

from ragvqa.benchmarks.base import Benchmark, FileRole, ScoredFile, ScoreTable
from ragvqa.registry import BENCHMARKS

__all__ = [
    "Benchmark",
    "FileRole",
    "ScoreTable",
    "ScoredFile",
    "benchmark_names",
    "get_benchmark",
]


def get_benchmark(name: str) -> Benchmark:
    """The plug-in registered as `name`; an unknown name is a `UserError` with the names known."""
    return BENCHMARKS.get(name)()


def benchmark_names() -> list[str]:
    """The registered names (shipped and from entry points), sorted."""
    return BENCHMARKS.names()
