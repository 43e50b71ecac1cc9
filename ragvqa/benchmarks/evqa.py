"""Encyclopedic-VQA (Mensink et al., 2023): the test CSV, scored by the official rules.

Files: the questions CSV (a row's id is its 0-based row number) and optionally a BEM checkpoint
(exact match, then BEM where exact match fails; without it, exact match only). Images come from
Google Landmarks v2 (`--images`) and iNaturalist 2021 (through its id -> file JSON). Headline
metrics: `single_hop` and `all`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from ragvqa.benchmarks.base import Benchmark, FileRole, percent
from ragvqa.data.evqa import load_evqa
from ragvqa.eval.evqa_scorer import aggregate_evqa, score_evqa
from ragvqa.types import BenchmarkExample, ExampleScore, MetricResult, Prediction


class EncyclopedicVQA(Benchmark):
    name = "evqa"
    title = "Encyclopedic-VQA"
    roles: ClassVar[Mapping[str, FileRole]] = {
        "questions": FileRole(help="E-VQA questions CSV"),
        "bem": FileRole(required=False, help="BEM checkpoint for official EM + BEM"),
    }
    image_root = "landmarks"
    headline = ("single_hop", "all")

    def load(self, files: Mapping[str, str]) -> list[BenchmarkExample]:
        return load_evqa(files["questions"])

    def missing_images(
        self, files: Mapping[str, str], roots: Mapping[str, str]
    ) -> tuple[int, list[str]]:
        """iNaturalist files are found only with their id -> name JSON: without both, neither."""
        roots = dict(roots)
        if "inaturalist_id2name" not in roots:
            roots.pop("inaturalist", None)
        if "inaturalist" not in roots:
            roots.pop("inaturalist_id2name", None)
        return super().missing_images(files, roots)

    def score(
        self,
        predictions: Sequence[Prediction],
        examples: Sequence[BenchmarkExample],
        files: Mapping[str, str],
    ) -> MetricResult:
        bem = None
        if files.get("bem"):
            from ragvqa.eval.bem import BemModel  # torch, transformers

            bem = BemModel(files["bem"])
        return score_evqa(predictions, examples, bem)

    # groups: single-hop (first) / two-hop; a group without questions is None officially
    def in_first_group(self, question_type: str, split: str) -> bool:
        return question_type != "2_hop"

    def from_counts(self, n1: int, h1: int, n2: int, h2: int) -> dict[str, float | None]:
        return {
            "single_hop": percent(h1, n1),
            "two_hop": percent(h2, n2),
            "all": percent(h1 + h2, n1 + n2),
        }

    def aggregate(self, scores: Sequence[ExampleScore]) -> dict[str, float | None]:
        m = aggregate_evqa(scores)
        return {k: m[k] for k in ("single_hop", "two_hop", "all")}
