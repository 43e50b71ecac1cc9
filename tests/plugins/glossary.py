"""An external benchmark plug-in, as another package would ship it: `tests/test_external_plugin.py`
copies this file into a package of its own (`ragvqa_glossary`) with an entry point in the
`ragvqa.benchmarks` group, outside ragvqa, and runs it through `bench`, `score` and `compare`.

Text questions about places and people. Two files: `questions` (JSONL `{"id", "question",
"topic"}`) and a file role of its own, `key` (JSONL `{"id", "answer"}`): the answers live apart
from the questions. Scored by case-insensitive exact match, per topic and over all; the topics
are its three question groups, so `ragvqa compare` recomputes the official figures from three
groups' counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from ragvqa.benchmarks import Benchmark, FileRole
from ragvqa.errors import UserError
from ragvqa.types import BenchmarkExample, ExampleScore, MetricResult, Prediction

TOPICS = ("city", "river", "person")


def _rows(path: str) -> list[dict]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        raise UserError("file not found", path=path) from None
    return [json.loads(line) for line in lines if line.strip()]


def _percent(hits: int, n: int) -> float | None:
    return round(hits / n * 100, 2) if n else None


class Glossary(Benchmark):
    name = "glossary"
    title = "Glossary (an external plug-in)"
    roles: ClassVar[Mapping[str, FileRole]] = {
        "questions": FileRole(help="glossary questions JSONL"),
        "key": FileRole(help="glossary answer key JSONL"),
    }
    headline = ("all", "city", "river", "person")
    groups = TOPICS

    def folder(self) -> Path:
        return Path(__file__).resolve().parent  # no benchmark.yaml: no default files

    def load(self, files: Mapping[str, str]) -> list[BenchmarkExample]:
        key = {row["id"]: row["answer"] for row in _rows(files["key"])}
        return [
            BenchmarkExample(
                example_id=row["id"],
                dataset=self.name,
                question=row["question"],
                answers=(key[row["id"]],),
                question_type=row["topic"],
                source=f"{files['questions']}:{line}",
            )
            for line, row in enumerate(_rows(files["questions"]), 1)
        ]

    def resolve_images(self, examples, roots):
        return list(examples), []  # text only

    def score(
        self,
        predictions: Sequence[Prediction],
        examples: Sequence[BenchmarkExample],
        files: Mapping[str, str],
    ) -> MetricResult:
        by_id = {e.example_id: e for e in examples}
        scores = tuple(
            ExampleScore(
                p.example_id,
                int(p.answer.strip().lower() == e.answers[0].lower()),
                e.question_type,
                "",
                "exact",
            )
            for p in predictions
            if (e := by_id.get(p.example_id)) is not None
        )
        coverage = {
            "questions": len(examples),
            "predictions": len(predictions),
            "scored": len(scores),
            "unknown_ids": len(predictions) - len(scores),
            "duplicate_ids": 0,
            "missing_predictions": len(examples) - len({s.example_id for s in scores}),
        }
        return MetricResult(self.aggregate(scores), scores, coverage)

    def group_of(self, question_type: str, split: str) -> str:
        return question_type

    def from_group_counts(self, counts: Mapping[str, tuple[int, int]]) -> dict[str, float | None]:
        n = sum(c[0] for c in counts.values())
        hits = sum(c[1] for c in counts.values())
        return {"all": _percent(hits, n), **{t: _percent(h, m) for t, (m, h) in counts.items()}}

    def aggregate(self, scores: Sequence[ExampleScore]) -> dict[str, float | None]:
        counts = {
            t: (
                sum(s.question_type == t for s in scores),
                sum(s.score for s in scores if s.question_type == t),
            )
            for t in TOPICS
        }
        return self.from_group_counts(counts)
