"""The wn-wiki scorer: exact match after normalisation against any of the answers.

Normalisation is InfoSeek's (and SQuAD's): lower-case, delete ASCII punctuation, blank out the
whole words a / an / the, collapse white space; so "The Eiffel Tower." matches "Eiffel Tower".
A question counts once per prediction, as in the other scorers: unknown ids are dropped,
duplicates count twice, questions without a prediction are left out (all reported in
`coverage`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragvqa.eval.coverage import match_predictions
from ragvqa.eval.infoseek_scorer import normalize_answer
from ragvqa.types import BenchmarkExample, ExampleScore, MetricResult, Prediction


def exact_match(prediction: str, answers: Sequence[str]) -> int:
    """1 iff the normalised prediction equals a normalised answer (an empty one never does)."""
    norm = normalize_answer(prediction)
    return int(bool(norm) and any(norm == normalize_answer(a) for a in answers))


def aggregate_wn_wiki(scores: Sequence[ExampleScore]) -> dict[str, Any]:
    """{"accuracy": percent correct rounded to 2 (None without scores), "counts": {...}}."""
    correct = sum(s.score for s in scores)
    accuracy = round(correct / len(scores) * 100, 2) if scores else None
    return {"accuracy": accuracy, "counts": {"scored": len(scores), "correct": correct}}


def score_wn_wiki(
    predictions: Sequence[Prediction], examples: Sequence[BenchmarkExample]
) -> MetricResult:
    """Exact match of each prediction against its question's `answers`."""
    pairs, coverage = match_predictions(predictions, {e.example_id: e for e in examples})
    per_example = tuple(
        ExampleScore(e.example_id, exact_match(p.answer, e.answers), "", "", "exact")
        for p, e in pairs
    )
    return MetricResult(aggregate_wn_wiki(per_example), per_example, coverage)
