"""InfoSeek (Chen et al., 2023): questions about OVEN images, scored by the official rules.

Files: the questions JSONL, the question-type JSONL (required by the official scorer) and
optionally the withkb JSONL (gold Wikidata entity per question, for entity recall). Images are
OVEN images under one root. The headline metric is `final_score`, the harmonic mean of the
unseen-question and unseen-entity split scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ragvqa.benchmarks.base import Benchmark, FileRole, ScoredFile, ScoreTable, cell, percent
from ragvqa.data.fields import get_str
from ragvqa.data.images import OvenImages
from ragvqa.data.infoseek import load_answer_key, load_infoseek
from ragvqa.eval.infoseek_scorer import (
    aggregate_infoseek,
    harmonic_mean,
    score_answer_key,
    score_infoseek,
    split_of,
)
from ragvqa.eval.predictions import coverage_line, read_predictions
from ragvqa.io import iter_jsonl
from ragvqa.types import BenchmarkExample, ExampleScore, MetricResult, Prediction

SPLITS = ("unseen_question", "unseen_entity")
SCORE_KEYS = ("score", "score_time", "score_num", "score_string")


class InfoSeek(Benchmark):
    name = "infoseek"
    title = "InfoSeek"
    roles: ClassVar[Mapping[str, FileRole]] = {
        "questions": FileRole(help="InfoSeek questions JSONL"),
        "qtypes": FileRole(help="InfoSeek question-type JSONL"),
        "withkb": FileRole(
            required=False,
            help="InfoSeek withkb JSONL (gold entities)",
            note="entity recall is not judged",
        ),
    }
    image_root = "oven"
    headline = ("final_score", "unseen_question_score.score", "unseen_entity_score.score")

    def load(self, files: Mapping[str, str]) -> list[BenchmarkExample]:
        return load_infoseek(files["questions"], files["qtypes"], files.get("withkb"))

    def missing_images(
        self, files: Mapping[str, str], roots: Mapping[str, str]
    ) -> tuple[int, list[str]]:
        """Reads only `data_id` and `image_id` (no question types needed to count images)."""
        questions = files["questions"]
        pairs = [
            (get_str(obj, "data_id", questions, line), get_str(obj, "image_id", questions, line))
            for line, obj in iter_jsonl(questions)
        ]
        oven = roots.get(self.image_root)
        if not oven or not Path(oven).is_dir():
            return len(pairs), [data_id for data_id, _ in pairs]
        images = OvenImages(oven)
        missing = [data_id for data_id, image_id in pairs if images.resolve(image_id) is None]
        return len(pairs), missing

    def score(
        self,
        predictions: Sequence[Prediction],
        examples: Sequence[BenchmarkExample],
        files: Mapping[str, str],
    ) -> MetricResult:
        return score_infoseek(predictions, examples)

    def score_file(self, predictions: str, files: Mapping[str, str]) -> ScoredFile:
        """The answer-key route (issue 16): the same scores as `score`, without a typed object
        per question or prediction."""
        key = load_answer_key(files["questions"], files["qtypes"])
        r = score_answer_key(*read_predictions(predictions), key)
        return ScoredFile(r.metrics, r.coverage, r.ids, r.scores, (coverage_line(r.coverage),))

    def score_table(self, metrics: Mapping[str, Any]) -> ScoreTable:
        rows = [
            (split, *(cell(metrics[f"{split}_score"][k]) for k in SCORE_KEYS)) for split in SPLITS
        ]
        rows.append(("final (harmonic mean)", cell(metrics["final_score"]), "", "", ""))
        columns = ("split", "score", "time", "numerical", "string")
        return ScoreTable("InfoSeek (official rules)", columns, tuple(rows))

    # groups: unseen question, unseen entity; an empty split scores 0 officially
    groups = SPLITS

    def group_of(self, question_type: str, split: str) -> str:
        return split_of(split)

    def from_group_counts(self, counts: Mapping[str, tuple[int, int]]) -> dict[str, float | None]:
        uq, ue = (percent(hits, n) or 0 for n, hits in (counts[g] for g in SPLITS))
        return {
            "final_score": round(harmonic_mean(uq, ue), 2),
            "unseen_question_score": uq,
            "unseen_entity_score": ue,
        }

    def aggregate(self, scores: Sequence[ExampleScore]) -> dict[str, float | None]:
        m = aggregate_infoseek(scores)
        return {
            "final_score": m["final_score"],
            "unseen_question_score": m["unseen_question_score"]["score"],
            "unseen_entity_score": m["unseen_entity_score"]["score"],
        }

    def example_score(
        self, data_id: str, score: int, question_type: str, split: str, method: str
    ) -> ExampleScore:
        return ExampleScore(data_id, score, question_type, split_of(split), method)
