"""The InfoSeek scoring rules, each checked on values worked out by hand from the official
rules (docs/scoring.md and the official infoseek_eval.py)."""

from __future__ import annotations

import pytest

from ragvqa.errors import UserError
from ragvqa.eval.infoseek_scorer import (
    harmonic_mean,
    normalize_answer,
    parse_numerical,
    score_infoseek,
    score_numerical,
    score_string,
)
from ragvqa.types import BenchmarkExample, NumericRange, Prediction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("an apple a day", "apple day"),
        ("U.S.A.", "usa"),  # punctuation deleted, not replaced by a space
        ("New-York", "newyork"),
        ("Theatre", "theatre"),  # 'the' only as a whole word
        ("  lots   of\tspace ", "lots of space"),
        ("A", ""),
        ("l'a", "la"),  # apostrophe deleted first, then 'la' is not an article
        ("café ‘x’", "café ‘x’"),  # only ASCII punctuation is deleted
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("9-10", [9.0, 10.0]),
        ("7-6", 7.0),  # descending pair -> the first number alone
        ("1,234.5 m", 1234.5),
        ("1,18", [1.0, 18.0]),  # ',18' is not a thousands group
        (".5", 5.0),  # leading '.' stripped
        ("3e2", 300.0),
        ("seven", [0, 0]),
        ("between 4 and 5 and 6", [4.0, 5.0]),  # only the first two numbers
        ("-3", -3.0),  # '-' not after a digit keeps its sign
        ("1.2.3", [1.2, 3.0]),  # regex takes '1.2' then '.3' ('.' stripped -> 3.0)
        ("12,000-13,000", [12000.0, 13000.0]),
    ],
)
def test_parse_numerical(prediction, expected):
    assert parse_numerical(prediction) == expected


def test_parse_numerical_skips_token_the_official_script_cannot_parse():
    # "-.5.5" -> token "-.5.5" -> two dots -> integer part "-": official float("-") raises.
    assert parse_numerical("-.5.5 then 3") == 3.0


@pytest.mark.parametrize(
    ("prediction", "low", "high", "expected"),
    [
        ("6.5", 6.5, 7.0, 1),  # bounds are inclusive
        ("7.0", 6.5, 7.0, 1),
        ("7.01", 6.5, 7.0, 0),
        ("6.6-6.9", 6.5, 7.0, 1),  # both ends inside
        ("1-4", 0.0, 3.0, 1),  # overlap 2 / union (3+3-2) = exactly 0.5 (minus epsilons): passes
        ("2-4", 0.0, 3.0, 0),  # overlap 1 / union 4 = 0.25
        ("1-3", 0.0, 2.0, 0),  # 1/3
        ("seven", -1.0, 1.0, 1),  # no number -> [0, 0], inside [-1, 1]
        ("seven", 1.0, 2.0, 0),
        ("7-6", 6.5, 7.0, 1),  # scalar 7.0
    ],
)
def test_score_numerical(prediction, low, high, expected):
    assert score_numerical(prediction, NumericRange(low, high)) == expected


def test_score_string_matches_any_normalized_reference():
    refs = ["Endangered species", "Endangered", "EN"]
    assert score_string("endangered.", refs) == 1
    assert score_string("The EN", refs) == 1
    assert score_string("endangered animal", refs) == 0


def test_harmonic_mean_official_readme_value():
    # BLIP-2 in the official README: unseen-question 12.74, unseen-entity 12.28 -> 12.51.
    assert round(harmonic_mean(12.74, 12.28), 2) == 12.51
    assert harmonic_mean(0, 50.0) == pytest.approx(2e-12)  # zero -> 1e-12


def _ex(data_id, qtype, split, answer_eval=(), rng=None):
    return BenchmarkExample(
        example_id=data_id,
        dataset="infoseek",
        question="q",
        answer_eval=tuple(answer_eval),
        numeric_range=NumericRange(*rng) if rng else None,
        question_type=qtype,
        split=split,
    )


EXAMPLES = [
    _ex("q1", "String", "val_unseen_question", ["Paris"]),
    _ex("q2", "Numerical", "val_unseen_question", rng=(10.0, 20.0)),
    _ex("q3", "Time", "val_unseen_question", ["1990", "1989", "1991"]),
    _ex("q4", "String", "val_unseen_entity", ["Mount Everest", "Everest"]),
    _ex("q5", "Numerical", "val_unseen_entity", rng=(1.0, 2.0)),
    _ex("q6", "String", "val_unseen_entity", ["blue"]),
]


# The official aggregate of the predictions below, by hand:
# unseen_question: time [0, 1] -> 50, num [1] -> 100, string [1] -> 100, all 3/4 -> 75
# unseen_entity: no time -> integer 0, num [0] -> 0, string [1] -> 100, all 1/2 -> 50
# final = 2 / (1/75 + 1/50) = 60
HAND_WORKED = {
    "final_score": 60.0,
    "unseen_question_score": {
        "score": 75.0,
        "score_time": 50.0,
        "score_num": 100.0,
        "score_string": 100.0,
    },
    "unseen_entity_score": {
        "score": 50.0,
        "score_time": 0,
        "score_num": 0.0,
        "score_string": 100.0,
    },
}


def test_aggregate_worked_by_hand():
    preds = [
        Prediction("q1", "paris."),  # 1
        Prediction("q2", "15"),  # 1
        Prediction("q3", "1992"),  # 0
        Prediction("q3", "1991"),  # 1 (duplicate: counted again)
        Prediction("q4", "the Everest"),  # 1
        Prediction("q5", "3-4"),  # 0
        Prediction("nope", "x"),  # unknown id: dropped
    ]  # q6 has no prediction: not counted
    result = score_infoseek(preds, EXAMPLES)
    assert result.metrics == HAND_WORKED
    assert isinstance(result.metrics["unseen_entity_score"]["score_time"], int)
    assert [(s.example_id, s.score) for s in result.per_example] == [
        ("q1", 1),
        ("q2", 1),
        ("q3", 0),
        ("q3", 1),
        ("q4", 1),
        ("q5", 0),
    ]
    cov = result.coverage
    assert (cov["predictions"], cov["scored"], cov["unknown_ids"]) == (7, 6, 1)
    assert (cov["duplicate_ids"], cov["missing_predictions"]) == (1, 1)
    assert cov["examples"]["missing_predictions"] == ["q6"]


def test_final_score_is_harmonic_mean_of_rounded_split_scores():
    # unseen_question 2/3 -> 66.67 (rounded); unseen_entity 1/7 -> 14.29 (rounded).
    # HM(66.67, 14.29) = 23.535... -> 23.54; from unrounded values it is 23.5294... -> 23.53.
    examples = [_ex(f"u{i}", "String", "val_unseen_question", ["x"]) for i in range(3)]
    examples += [_ex(f"e{i}", "String", "val_unseen_entity", ["x"]) for i in range(7)]
    preds = [
        Prediction(e.example_id, "x" if e.example_id in ("u0", "u1", "e0") else "y")
        for e in examples
    ]
    metrics = score_infoseek(preds, examples).metrics
    assert metrics["unseen_question_score"]["score"] == 66.67
    assert metrics["unseen_entity_score"]["score"] == 14.29
    assert metrics["final_score"] == 23.54


def test_a_split_without_predictions_gives_final_zero():
    result = score_infoseek([Prediction("q1", "Paris")], EXAMPLES)
    assert result.metrics["unseen_question_score"]["score"] == 100.0
    assert result.metrics["unseen_entity_score"]["score"] == 0
    assert result.metrics["final_score"] == 0.0


def test_untyped_question_is_refused():
    with pytest.raises(UserError, match="no question type"):
        score_infoseek([], [_ex("q1", "", "val_unseen_question", ["x"])])


def test_empty_reference_is_refused_only_when_scored():
    examples = [_ex("q0", "String", "val_unseen_question", []), EXAMPLES[0]]
    assert score_infoseek([Prediction("q1", "Paris")], examples).coverage["scored"] == 1
    with pytest.raises(UserError, match="empty answer_eval"):
        score_infoseek([Prediction("q0", "Paris")], examples)
