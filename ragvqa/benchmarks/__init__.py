"""Benchmark plug-ins: one module per benchmark, found by name through `get_benchmark`.

Shipped: `infoseek` (InfoSeek val), `evqa` (Encyclopedic-VQA test). Add one with
`ragvqa.registry.BENCHMARKS.register(name, "package.module:Class")`, or from another package
through the `ragvqa.benchmarks` entry-point group. See docs/benchmarks.md.
"""

from __future__ import annotations

from ragvqa.benchmarks.base import Benchmark, FileRole
from ragvqa.registry import BENCHMARKS

__all__ = ["Benchmark", "FileRole", "benchmark_names", "get_benchmark"]


def get_benchmark(name: str) -> Benchmark:
    """The plug-in registered as `name`; an unknown name is a `UserError` with the names known."""
    return BENCHMARKS.get(name)()


def benchmark_names() -> list[str]:
    return BENCHMARKS.names()
