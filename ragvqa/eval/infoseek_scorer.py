"""The official InfoSeek scorer, reimplemented exactly in pure Python.

Reproduces `infoseek_eval.py` of the official evaluator (edchengg/infoseek_eval) rule by rule:
the same answer normalisation, the same numerical parsing and range matching, the same
per-split means, the same rounding, and the final harmonic mean of the *already rounded* split
scores. See docs/scoring.md for the one input on which the official script crashes and
ragvqa does not.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

from ragvqa.errors import UserError
from ragvqa.eval.coverage import match_predictions
from ragvqa.types import BenchmarkExample, ExampleScore, MetricResult, NumericRange, Prediction

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"[-+]?[.]?[\d]+(?:,\d\d\d)*[\.]?\d*(?:[eE][-+]?\d+)?")
_EPS = 1e-12

Parsed = float | list[float]


def normalize_answer(text: str) -> str:
    """Lower-case, delete ASCII punctuation, blank out whole-word a/an/the, collapse spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def _spaced_ranges(text: str) -> str:
    """Put spaces around every '-' that directly follows a digit ("9-10" -> "9 - 10")."""
    return "".join(
        " - " if ch == "-" and i >= 1 and text[i - 1].isdigit() else ch for i, ch in enumerate(text)
    )


def _to_float(token: str) -> float | None:
    token = token.replace(",", "").strip(".")
    if token.count(".") > 1:
        token = token.split(".")[0]
    try:
        return float(token)
    except ValueError:  # e.g. "-.5.5" -> "-": the official script raises here; ragvqa skips it
        return None


def parse_numerical(prediction: str) -> Parsed:
    """A prediction as a scalar or a [low, high] range, as the official scorer parses it.

    Two numbers give a range when the first is not larger, else the first number alone;
    one number gives a scalar; none gives [0, 0].
    """
    numbers = [_to_float(t) for t in _NUMBER.findall(_spaced_ranges(prediction))]
    numbers = [n for n in numbers if n is not None][:2]
    if len(numbers) == 2:
        first, second = numbers
        return [first, second] if first <= second else first
    if len(numbers) == 1:
        return numbers[0]
    return [0, 0]


def _range_iou(pred: list[float], ref: NumericRange) -> float:
    lo1, hi1 = min(pred), max(pred)
    lo2, hi2 = min(ref.low, ref.high), max(ref.low, ref.high)
    overlap = max(0.0, min(hi1, hi2) - max(lo1, lo2))
    union = (hi1 - lo1 + _EPS) + (hi2 - lo2 + _EPS) - overlap
    return overlap / union if union != 0 else 0


def score_numerical(prediction: str, ref: NumericRange) -> int:
    """1 iff the parsed prediction lies in the range, or (a range) overlaps it with IoU >= 0.5."""
    pred = parse_numerical(prediction)
    if not isinstance(pred, list):
        return 1 if ref.low <= pred <= ref.high else 0
    if ref.low <= pred[0] <= ref.high and ref.low <= pred[1] <= ref.high:
        return 1
    return 1 if _range_iou(pred, ref) >= 0.5 - _EPS else 0


def score_string(prediction: str, references: Iterable[str]) -> int:
    """1 iff the normalised prediction equals a normalised reference (String and Time)."""
    norm = normalize_answer(prediction)
    return 1 if any(norm == normalize_answer(r) for r in references) else 0


def score_example(prediction: Prediction, example: BenchmarkExample) -> ExampleScore:
    """The official 0/1 score of one prediction."""
    qtype = example.question_type.lower()
    if qtype == "numerical":
        assert example.numeric_range is not None  # the loader guarantees it
        value = score_numerical(prediction.answer, example.numeric_range)
        method = "range"
    else:
        if not example.answer_eval:
            raise UserError(
                f"question '{example.example_id}' has an empty answer_eval", path=example.source
            )
        value = score_string(prediction.answer, example.answer_eval)
        method = "exact"
    split = split_of(example.split)
    return ExampleScore(example.example_id, value, example.question_type, split, method)


def split_of(data_split: str) -> str:
    """The official split a question counts in: "unseen_question" iff `data_split` ends so."""
    return "unseen_question" if data_split.endswith("unseen_question") else "unseen_entity"


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0


def _split_metrics(scores: list[ExampleScore]) -> dict[str, float]:
    """`score`, `score_time`, `score_num`, `score_string` of one split, rounded officially."""
    time = [s.score for s in scores if s.question_type.lower() == "time"]
    num = [s.score for s in scores if s.question_type.lower() == "numerical"]
    other = [s.score for s in scores if s.question_type.lower() not in ("time", "numerical")]
    return {
        "score": round(_mean(time + num + other) * 100, 2),
        "score_time": round(_mean(time) * 100, 2),
        "score_num": round(_mean(num) * 100, 2),
        "score_string": round(_mean(other) * 100, 2),
    }


def harmonic_mean(*values: float) -> float:
    """Harmonic mean with zeros replaced by 1e-12, as the official scorer computes it."""
    safe = [v if v != 0 else _EPS for v in values]
    return len(safe) / sum(1.0 / v for v in safe)


def score_infoseek(
    predictions: Sequence[Prediction], examples: Sequence[BenchmarkExample]
) -> MetricResult:
    """Score predictions with the official InfoSeek rules.

    Every example must carry a question type (load it with the qtype file). Only predictions
    are scored: unknown ids are dropped, duplicates count twice, questions without a
    prediction are left out; all three are reported in `coverage`.
    """
    by_id = {e.example_id: e for e in examples}
    for e in examples:
        if not e.question_type:
            raise UserError(f"question '{e.example_id}' has no question type (pass the qtype file)")
        if not e.split:
            raise UserError(f"question '{e.example_id}' has no data_split", path=e.source)
    pairs, coverage = match_predictions(predictions, by_id)
    per_example = tuple(score_example(p, e) for p, e in pairs)
    return MetricResult(
        metrics=aggregate_infoseek(per_example), per_example=per_example, coverage=coverage
    )


def aggregate_infoseek(scores: Sequence[ExampleScore]) -> dict[str, Any]:
    """The official metrics of per-question scores (`split` already "unseen_question" or
    "unseen_entity"): per-split scores and their harmonic mean, rounded officially."""
    uq = _split_metrics([s for s in scores if s.split == "unseen_question"])
    ue = _split_metrics([s for s in scores if s.split == "unseen_entity"])
    return {
        "final_score": round(harmonic_mean(uq["score"], ue["score"]), 2),
        "unseen_question_score": uq,
        "unseen_entity_score": ue,
    }
