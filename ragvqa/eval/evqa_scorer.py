"""The official Encyclopedic-VQA scorer, in pure Python (no TensorFlow).

Per question: for each '|'-separated reference alternative, the official exact match
(`evqa_text`); when no alternative matches exactly and a BEM model is given, BEM decides
(probability of "equivalent" >= 0.5 for any alternative). The question's score is the max over
alternatives. Aggregates: single-hop (every type but 2_hop), two-hop, all, and per question
type, each 100 * mean rounded to 2 decimals (null for a group with no scored prediction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ragvqa.data.evqa import QUESTION_TYPES
from ragvqa.errors import UserError
from ragvqa.eval.coverage import match_predictions
from ragvqa.eval.evqa_text import EmptyReference, Preprocess, cached_preprocess, exact_match
from ragvqa.types import BenchmarkExample, ExampleScore, MetricResult, Prediction


class AnswerEquivalence(Protocol):
    """What the scorer needs of a BEM model (see `ragvqa.eval.bem.BemModel`)."""

    name: str

    def probabilities(self, triples: Sequence[tuple[str, str, str]]) -> list[float]:
        """P(equivalent) for each (question, reference, candidate)."""
        ...


def _exact(prediction: Prediction, example: BenchmarkExample, preprocess: Preprocess) -> bool:
    if example.question_type not in QUESTION_TYPES:
        raise UserError(
            f"unknown question_type {example.question_type!r} (expected one of "
            f"{', '.join(QUESTION_TYPES)})",
            path=example.source,
        )
    try:
        # every alternative is checked, as the official scorer does, so a bad one is reported
        qtype = example.question_type
        matches = [exact_match(r, prediction.answer, qtype, preprocess) for r in example.answers]
    except EmptyReference as exc:
        raise UserError(f"question {example.example_id}: {exc}", path=example.source) from None
    if not matches:
        raise UserError(
            f"question {example.example_id} has no reference answer", path=example.source
        )
    return any(matches)


def _bem_triples(prediction: Prediction, example: BenchmarkExample) -> list[tuple[str, str, str]]:
    refs = example.answers
    if example.question_type == "multi_answer":
        refs = tuple(r.replace("&&", ",") for r in refs)
    return [(example.question, r, prediction.answer) for r in refs]


def _group_score(values: list[int]) -> float | None:
    return round(sum(values) / len(values) * 100, 2) if values else None


def score_evqa(
    predictions: Sequence[Prediction],
    examples: Sequence[BenchmarkExample],
    bem: AnswerEquivalence | None = None,
) -> MetricResult:
    """Score predictions with the official E-VQA rules; BEM only where exact match fails."""
    pairs, coverage = match_predictions(predictions, {e.example_id: e for e in examples})
    preprocess = cached_preprocess()  # each distinct answer and reference preprocessed once
    exact = [_exact(p, e, preprocess) for p, e in pairs]
    bem_hit = [False] * len(pairs)
    if bem is not None:
        todo = [i for i, hit in enumerate(exact) if not hit]
        triples = sorted({t for i in todo for t in _bem_triples(*pairs[i])})
        prob = dict(zip(triples, bem.probabilities(triples), strict=True))
        for i in todo:
            bem_hit[i] = any(prob[t] >= 0.5 for t in _bem_triples(*pairs[i]))
    per_example = tuple(
        ExampleScore(
            example_id=e.example_id,
            score=int(hit or bhit),
            question_type=e.question_type,
            split=e.split,
            method="exact" if hit else ("bem" if bem is not None else "none"),
        )
        for (_, e), hit, bhit in zip(pairs, exact, bem_hit, strict=True)
    )
    return MetricResult(aggregate_evqa(per_example, bem), per_example, coverage)


def aggregate_evqa(
    scores: Sequence[ExampleScore], bem: AnswerEquivalence | None = None
) -> dict[str, Any]:
    """The official metrics of per-question scores: single-hop, two-hop, all, per type."""
    single = [s.score for s in scores if s.question_type != "2_hop"]
    two = [s.score for s in scores if s.question_type == "2_hop"]
    by_type = {t: [s.score for s in scores if s.question_type == t] for t in QUESTION_TYPES}
    return {
        "single_hop": _group_score(single),
        "two_hop": _group_score(two),
        "all": _group_score([s.score for s in scores]),
        "by_question_type": {t: _group_score(v) for t, v in by_type.items()},
        "counts": {
            "single_hop": len(single),
            "two_hop": len(two),
            "all": len(scores),
            **{t: len(v) for t, v in by_type.items()},
        },
        "bem": bem.name if bem is not None else None,
        "scoring": "exact match, then BEM" if bem is not None else "exact match only",
    }
