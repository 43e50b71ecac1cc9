"""The official InfoSeek scorer, reimplemented exactly in pure Python.

Reproduces `infoseek_eval.py` of the official evaluator (edchengg/infoseek_eval) rule by rule:
the same answer normalisation, the same numerical parsing and range matching, the same
per-split means, the same rounding, and the final harmonic mean of the *already rounded* split
scores. See docs/scoring.md for the one input on which the official script crashes and
ragvqa does not.

A whole split (73,620 val predictions) is scored from columns: prediction ids and answers in two
lists, the questions as an `AnswerKey` (`ragvqa.data.infoseek.load_answer_key`), each distinct
answer normalised once, per-split counts instead of an object per prediction
(`score_answer_key`). `score_infoseek` takes typed predictions and examples and scores them
through the same code.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ragvqa.data.infoseek import AnswerKey, Reference
from ragvqa.errors import UserError
from ragvqa.eval.coverage import match_ids
from ragvqa.types import BenchmarkExample, ExampleScore, MetricResult, NumericRange, Prediction

_PUNCT = string.punctuation.encode("ascii")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"[-+]?[.]?[\d]+(?:,\d\d\d)*[\.]?\d*(?:[eE][-+]?\d+)?")
_EPS = 1e-12

Parsed = float | list[float]


def normalize_answer(text: str) -> str:
    """Lower-case, delete ASCII punctuation, blank out whole-word a/an/the, collapse spaces.

    Punctuation is deleted from the UTF-8 bytes (faster than `str.translate`; no byte of a
    multi-byte character is ASCII, so the text is otherwise unchanged)."""
    raw = text.lower().encode("utf-8", "surrogatepass").translate(None, _PUNCT)
    return " ".join(_ARTICLES.sub(" ", raw.decode("utf-8", "surrogatepass")).split())


def _spaced_ranges(text: str) -> str:
    """Put spaces around every '-' that directly follows a digit ("9-10" -> "9 - 10")."""
    if "-" not in text:
        return text
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
    return _in_range(parse_numerical(prediction), ref)


def _in_range(pred: Parsed, ref: NumericRange) -> int:
    if not isinstance(pred, list):
        return 1 if ref.low <= pred <= ref.high else 0
    if ref.low <= pred[0] <= ref.high and ref.low <= pred[1] <= ref.high:
        return 1
    return 1 if _range_iou(pred, ref) >= 0.5 - _EPS else 0


def score_string(prediction: str, references: Iterable[str]) -> int:
    """1 iff the normalised prediction equals a normalised reference (String and Time)."""
    norm = normalize_answer(prediction)
    return 1 if any(norm == normalize_answer(r) for r in references) else 0


def split_of(data_split: str) -> str:
    """The official split a question counts in: "unseen_question" iff `data_split` ends so."""
    return "unseen_question" if data_split.endswith("unseen_question") else "unseen_entity"


def harmonic_mean(*values: float) -> float:
    """Harmonic mean with zeros replaced by 1e-12, as the official scorer computes it."""
    safe = [v if v != 0 else _EPS for v in values]
    return len(safe) / sum(1.0 / v for v in safe)


@dataclass(frozen=True)
class InfoSeekScores:
    """Official scores of a prediction file as columns: the i-th scored prediction has id
    `ids[i]` and 0/1 score `scores[i]` (prediction order, duplicates repeated, unknown ids
    left out)."""

    metrics: dict[str, Any]
    coverage: dict[str, Any]
    ids: list[str]
    scores: list[int]


# Per-prediction tallies go to one of six cells: split (unseen question 0, unseen entity 3)
# plus kind (Time 0, Numerical 1, any other type 2: String), as the official script groups them.
_KIND = {"time": 0, "numerical": 1}
_NUMERICAL = 1


def _cell(question_type: str, data_split: str) -> int:
    base = 0 if split_of(data_split) == "unseen_question" else 3
    return base + _KIND.get(question_type.lower(), 2)


def score_answer_key(ids: Sequence[Any], answers: Sequence[str], key: AnswerKey) -> InfoSeekScores:
    """Score predictions (`ids[i]` answered `answers[i]`) with the official InfoSeek rules.

    Only predictions are scored: unknown ids are dropped, duplicates count twice, questions
    without a prediction are left out; all three are reported in `coverage`.

    Raises:
        UserError: a question without a type or a data_split; a String or Time question with
            an empty `answer_eval` that has a prediction.
    """
    _require_types_and_splits((i, qtype, split, src) for i, (qtype, split, _, src) in key.items())
    known, coverage = match_ids(ids, key)
    entries = [key[ids[i]] for i in known]
    normalized: dict[str, str] = {}  # each distinct answer and reference normalised once
    parsed: dict[str, Parsed] = {}  # and each distinct answer to a Numerical question parsed once
    cells: dict[tuple[str, str], int] = {}
    hits, counts = [0] * 6, [0] * 6
    scored_ids: list[str] = []
    scores: list[int] = []
    for i, (qtype, split, reference, source) in zip(known, entries, strict=True):
        data_id = ids[i]
        cell = cells.get((qtype, split))
        if cell is None:
            cell = cells[(qtype, split)] = _cell(qtype, split)
        if cell % 3 == _NUMERICAL:
            assert isinstance(reference, NumericRange)  # the loaders guarantee it
            number = parsed.get(answers[i])
            if number is None:
                number = parsed[answers[i]] = parse_numerical(answers[i])
            value = _in_range(number, reference)
        else:
            value = _matches(answers[i], reference, data_id, source, normalized)
        counts[cell] += 1
        hits[cell] += value
        scored_ids.append(data_id)
        scores.append(value)
    return InfoSeekScores(_metrics(hits, counts), coverage, scored_ids, scores)


def _matches(
    answer: str, reference: Reference, data_id: str, source: str, normalized: dict[str, str]
) -> int:
    """`score_string` with the normalised forms looked up in (and added to) `normalized`."""
    if not reference:
        raise UserError(f"question '{data_id}' has an empty answer_eval", path=source)
    assert not isinstance(reference, NumericRange)
    norm = normalized.get(answer)
    if norm is None:
        norm = normalized[answer] = normalize_answer(answer)
    for ref in reference:
        ref_norm = normalized.get(ref)
        if ref_norm is None:
            ref_norm = normalized[ref] = normalize_answer(ref)
        if ref_norm == norm:
            return 1
    return 0


def _require_types_and_splits(questions: Iterable[tuple[str, str, str, str]]) -> None:
    """Every (data_id, question_type, data_split, source) has a type and a split."""
    for data_id, qtype, split, source in questions:
        if not qtype:
            raise UserError(f"question '{data_id}' has no question type (pass the qtype file)")
        if not split:
            raise UserError(f"question '{data_id}' has no data_split", path=source)


def score_infoseek(
    predictions: Sequence[Prediction], examples: Sequence[BenchmarkExample]
) -> MetricResult:
    """Score predictions with the official InfoSeek rules (see `score_answer_key`).

    Every example must carry a question type (load it with the qtype file).
    """
    _require_types_and_splits((e.example_id, e.question_type, e.split, e.source) for e in examples)
    key: AnswerKey = {
        e.example_id: (e.question_type, e.split, _reference(e), e.source) for e in examples
    }
    columns = score_answer_key(
        [p.example_id for p in predictions], [p.answer for p in predictions], key
    )
    per_example = []
    for data_id, value in zip(columns.ids, columns.scores, strict=True):
        qtype, split = key[data_id][0], key[data_id][1]
        method = "range" if qtype.lower() == "numerical" else "exact"
        per_example.append(ExampleScore(data_id, value, qtype, split_of(split), method))
    return MetricResult(columns.metrics, tuple(per_example), columns.coverage)


def _reference(example: BenchmarkExample) -> Reference:
    numerical = example.question_type.lower() == "numerical"
    return example.numeric_range if numerical else example.answer_eval  # type: ignore[return-value]


def aggregate_infoseek(scores: Sequence[ExampleScore]) -> dict[str, Any]:
    """The official metrics of per-question scores (`split` already "unseen_question" or
    "unseen_entity"): per-split scores and their harmonic mean, rounded officially."""
    hits, counts = [0] * 6, [0] * 6
    for s in scores:
        if s.split in ("unseen_question", "unseen_entity"):
            cell = _cell(s.question_type, s.split)
            counts[cell] += 1
            hits[cell] += s.score
    return _metrics(hits, counts)


def _metrics(hits: list[int], counts: list[int]) -> dict[str, Any]:
    """The official result of the six cells' hit counts and question counts."""
    uq = _split_metrics(hits[:3], counts[:3])
    ue = _split_metrics(hits[3:], counts[3:])
    return {
        "final_score": round(harmonic_mean(uq["score"], ue["score"]), 2),
        "unseen_question_score": uq,
        "unseen_entity_score": ue,
    }


def _split_metrics(hits: list[int], counts: list[int]) -> dict[str, float]:
    """`score`, `score_time`, `score_num`, `score_string` of one split, rounded officially
    (a mean over no question is the integer 0, as in the official script)."""
    return {
        "score": _percent(sum(hits), sum(counts)),
        "score_time": _percent(hits[0], counts[0]),
        "score_num": _percent(hits[1], counts[1]),
        "score_string": _percent(hits[2], counts[2]),
    }


def _percent(hits: int, count: int) -> float:
    return round((hits / count if count else 0) * 100, 2)
