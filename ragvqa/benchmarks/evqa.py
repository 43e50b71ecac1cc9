"""Encyclopedic-VQA (Mensink et al., 2023): the test CSV, scored by the official rules.

Files: the questions CSV (a row's id is its 0-based row number) and optionally a BEM checkpoint
(exact match, then BEM where exact match fails; without it, exact match only). Images come from
Google Landmarks v2 (`--images`) and iNaturalist 2021 (through its id -> file JSON). Headline
metrics: `single_hop` and `all`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ragvqa.benchmarks.base import Benchmark, FileRole, ScoredFile, ScoreTable, cell, percent
from ragvqa.data.evqa import load_evqa
from ragvqa.eval.evqa_scorer import aggregate_evqa, score_evqa
from ragvqa.eval.predictions import coverage_line, load_predictions
from ragvqa.types import BenchmarkExample, ExampleScore, MetricResult, Prediction

GROUPS = ("single_hop", "two_hop", "all")


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
        return score_evqa(predictions, examples, _bem(files))

    def score_file(self, predictions: str, files: Mapping[str, str]) -> ScoredFile:
        """Integer ids in the predictions are row numbers too; notes say how it was scored (EM
        only, or EM + BEM) and how many BEM inputs were trimmed."""
        examples = self.load(files)
        preds = load_predictions(predictions, int_ids_as_str=True)
        bem = _bem(files)
        result = score_evqa(preds, examples, bem)
        hint = "" if bem is not None else " (pass --bem-model for the official EM + BEM score)"
        notes = [f"scoring: {result.metrics['scoring']}{hint}", coverage_line(result.coverage)]
        if bem is not None and bem.truncated:
            notes.append(f"BEM inputs longer than 512 tokens trimmed: {bem.truncated}")
        return ScoredFile.of(result, notes)

    def score_table(self, metrics: Mapping[str, Any]) -> ScoreTable:
        counts = metrics["counts"]
        rows = [(group, cell(metrics[group]), str(counts[group])) for group in GROUPS]
        rows += [
            (f"  {qtype}", cell(value), str(counts[qtype]))
            for qtype, value in metrics["by_question_type"].items()
        ]
        title = "Encyclopedic-VQA (official rules)"
        return ScoreTable(title, ("group", "accuracy", "n"), tuple(rows))

    # groups: single-hop, two-hop; a group without questions is None officially
    groups = ("single_hop", "two_hop")

    def group_of(self, question_type: str, split: str) -> str:
        return "two_hop" if question_type == "2_hop" else "single_hop"

    def from_group_counts(self, counts: Mapping[str, tuple[int, int]]) -> dict[str, float | None]:
        (n1, h1), (n2, h2) = counts["single_hop"], counts["two_hop"]
        return {
            "single_hop": percent(h1, n1),
            "two_hop": percent(h2, n2),
            "all": percent(h1 + h2, n1 + n2),
        }

    def aggregate(self, scores: Sequence[ExampleScore]) -> dict[str, float | None]:
        m = aggregate_evqa(scores)
        return {k: m[k] for k in GROUPS}


def _bem(files: Mapping[str, str]) -> Any:
    """The BEM model of the `bem` file, or None without one (exact match only)."""
    if not files.get("bem"):
        return None
    from ragvqa.eval.bem import BemModel  # torch, transformers

    return BemModel(files["bem"])
