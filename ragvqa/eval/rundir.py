"""The run directory that `ragvqa bench` writes and `compare` / `report` read.

Layout of RUN/:
- `config.yaml`: the resolved pipeline and benchmark settings (after `base:` and `--set`).
- `environment.json`: ragvqa, Python, torch, transformers, vLLM, faiss versions; CPU / GPU.
- `predictions.jsonl`: one `RunRecord` per question, in question order (written once, at the end,
  atomically; while a run is going on, finished generation chunks live in `work/`).
- `run.trec`: the retrieved passages in TREC format (`qid Q0 passage_id rank score ragvqa`).
- `metrics.json`: `{"benchmark", "pipeline", "official": <the scorer's metrics>, "retrieval":
  {"entity_recall": {...}, "pseudo_recall": {...}}, "counts": {...}, "timings": {...},
  "baselines": {...}}`.

A `RunRecord` line holds everything a reader of one answer needs: the question, the scored
answer and the raw output, the template id@version and hash, the passages retrieved (ids,
titles, scores, a text snippet) and which of them the reader saw, the gold answers and
entities, the official 0/1 score, the rank of the first gold-entity passage, and per-stage
seconds. `status` is "ok" or "failed" (with `error`): a failed question scores 0.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import iter_jsonl

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
TREC = "run.trec"


@dataclass
class RunRecord:
    """One answered (or failed) benchmark question, as written to predictions.jsonl."""

    data_id: str
    dataset: str
    question: str
    prediction: str = ""
    raw_output: str | None = None
    status: str = "ok"
    error: str | None = None
    image: str | None = None
    image_id: str | None = None
    question_type: str = ""
    split: str = ""
    gold_answers: list[str] = field(default_factory=list)
    gold_entities: list[str] = field(default_factory=list)
    gold_entity_names: list[str] = field(default_factory=list)
    score: int | None = None
    score_method: str = ""
    gold_rank: int | None = None
    template: str = ""
    template_hash: str = ""
    model: str = ""
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    prompt: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = "") -> RunRecord:
        known = {f.name for f in fields(cls)}
        if "data_id" not in obj:
            raise UserError("a prediction record without 'data_id'", path=source or None)
        return cls(**{k: v for k, v in obj.items() if k in known})


def read_records(run: str | Path) -> list[RunRecord]:
    """The records of a finished run, in question order."""
    path = Path(run) / PREDICTIONS
    if not path.is_file():
        raise UserError(f"not a finished run (no {PREDICTIONS})", path=str(run))
    return [RunRecord.from_json(obj, f"{path}:{line}") for line, obj in iter_jsonl(path)]


def read_metrics(run: str | Path) -> dict[str, Any]:
    path = Path(run) / METRICS
    if not path.is_file():
        raise UserError(f"not a finished run (no {METRICS})", path=str(run))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"malformed JSON ({exc.msg})", path=str(path), line=exc.lineno) from None
