"""InfoSeek (Chen et al., 2023): questions about OVEN images, scored by the official rules.

Files: the questions JSONL, the question-type JSONL (required by the official scorer) and
optionally the withkb JSONL (gold Wikidata entity per question, for entity recall). Images are
OVEN images under one root. The headline metric is `final_score`, the harmonic mean of the
unseen-question and unseen-entity split scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from ragvqa.benchmarks.base import Benchmark, FileRole, percent
from ragvqa.data.fields import get_str
from ragvqa.data.images import OvenImages
from ragvqa.data.infoseek import load_infoseek
from ragvqa.eval.infoseek_scorer import aggregate_infoseek, harmonic_mean, score_infoseek, split_of
from ragvqa.io import iter_jsonl
from ragvqa.types import BenchmarkExample, ExampleScore, MetricResult, Prediction


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

    # groups: unseen question (first) / unseen entity; an empty split scores 0 officially
    def in_first_group(self, question_type: str, split: str) -> bool:
        return split_of(split) == "unseen_question"

    def from_counts(self, n1: int, h1: int, n2: int, h2: int) -> dict[str, float | None]:
        uq, ue = percent(h1, n1) or 0, percent(h2, n2) or 0
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
