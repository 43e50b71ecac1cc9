"""The fast InfoSeek path (`load_answer_key` + `read_predictions` + `score_answer_key`, what
`ragvqa score infoseek` runs) against the typed one (`load_infoseek` + `load_predictions` +
`score_infoseek`): the same scores, coverage and errors, on values worked out by hand."""

from __future__ import annotations

import json

import pytest
from conftest import write_jsonl
from test_infoseek_scorer import HAND_WORKED

from ragvqa.data.infoseek import load_answer_key, load_infoseek
from ragvqa.errors import UserError
from ragvqa.eval.infoseek_scorer import score_answer_key, score_infoseek
from ragvqa.eval.predictions import load_predictions, read_predictions
from ragvqa.types import NumericRange


def _q(data_id, answer_eval, split="val_unseen_question", **extra):
    row = {
        "data_id": data_id,
        "image_id": f"oven_{data_id}",
        "question": "q",
        "answer": ["a"],
        "answer_eval": answer_eval,
        "data_split": split,
    }
    return {**row, **extra}


QUESTIONS = [
    _q("q1", ["Paris"]),
    _q("q2", [{"wikidata": 15, "range": [10, "20"]}]),
    _q("q3", ["1990", "1989", "1991"]),
    _q("q4", ["Mount Everest", "Everest"], "val_unseen_entity"),
    _q("q5", {"wikidata": 1.5, "range": [1.0, 2.0]}, "val_unseen_entity"),
    _q("q6", ["Paris"], "val_unseen_entity"),  # the same reference as q1: normalised once
]
QTYPES = [
    {"data_id": q, "question_type": t}
    for q, t in zip(
        ["q1", "q2", "q3", "q4", "q5", "q6"],
        ["String", "Numerical", "Time", "String", "Numerical", "String"],
        strict=True,
    )
]
PREDICTIONS = [
    {"data_id": "q1", "prediction": "paris."},  # 1
    {"data_id": "q2", "prediction": "15"},  # 1
    {"data_id": "q3", "prediction": "1992"},  # 0
    {"data_id": "q3", "prediction": "1991"},  # 1 (duplicate: counted again)
    {"data_id": "q4", "prediction": "the Everest"},  # 1
    {"data_id": "q5", "prediction": "3-4"},  # 0
    {"data_id": 6, "prediction": "x"},  # an integer id matches nothing
    {"data_id": ["q6"], "prediction": "x"},  # nor does a list
]  # q6 has no prediction: not counted


@pytest.fixture
def files(tmp_path):
    return (
        write_jsonl(tmp_path / "q.jsonl", QUESTIONS),
        write_jsonl(tmp_path / "t.jsonl", QTYPES),
        write_jsonl(tmp_path / "p.jsonl", PREDICTIONS),
    )


def _fast(p, q, t):
    return score_answer_key(*read_predictions(p), load_answer_key(q, t))


def _typed(p, q, t):
    return score_infoseek(load_predictions(p), load_infoseek(q, t))


def test_both_paths_give_the_hand_worked_scores(files):
    q, t, p = files
    fast, typed = _fast(p, q, t), _typed(p, q, t)
    expected = HAND_WORKED  # the same predictions as test_infoseek_scorer's hand-worked case
    assert fast.metrics == typed.metrics == expected
    assert json.dumps(fast.metrics) == json.dumps(typed.metrics)  # 0 stays an integer
    assert fast.ids == ["q1", "q2", "q3", "q3", "q4", "q5"]
    assert fast.scores == [1, 1, 0, 1, 1, 0]
    assert [(s.example_id, s.score) for s in typed.per_example] == list(
        zip(fast.ids, fast.scores, strict=True)
    )
    assert fast.coverage == typed.coverage
    assert (fast.coverage["unknown_ids"], fast.coverage["duplicate_ids"]) == (2, 1)
    assert fast.coverage["examples"]["unknown_ids"] == ["6", "['q6']"]
    assert fast.coverage["examples"]["missing_predictions"] == ["q6"]


def test_answer_key_holds_what_the_official_scorer_reads(files):
    q, t, _ = files
    key = load_answer_key(q, t)
    assert list(key) == ["q1", "q2", "q3", "q4", "q5", "q6"]
    assert key["q1"] == ("String", "val_unseen_question", ("Paris",), f"{q}:1")
    assert key["q2"][2] == NumericRange(10.0, 20.0)  # "20": text read as a number
    assert key["q5"][2] == NumericRange(1.0, 2.0)  # a bare dict


BAD_QUESTIONS = {
    "no data_id": ([{"question": "q"}], "1: missing field 'data_id'"),
    "duplicate": ([QUESTIONS[0], QUESTIONS[0]], "2: duplicate data_id 'q1'"),
    "no range": ([_q("q2", ["12"])], "1: numerical answer without a range [low, high]"),
    "range not numbers": (
        [_q("q2", [{"range": ["a", 2]}])],
        "1: numerical range is not two numbers: ['a', 2]",
    ),
    # several bad fields: answer_eval is checked first, then image_id, question, answer, split
    "bad answer_eval first": (
        [_q("q1", [1], question=None, answer=[2])],
        "1: field 'answer_eval' must be a list of strings",
    ),
    "image_id before question": (
        [_q("q1", ["x"], image_id=3, question=None)],
        "1: field 'image_id' must be a string, got int",
    ),
    "question before answer": (
        [_q("q1", ["x"], question=None, answer=[2])],
        "1: missing field 'question'",
    ),
    "answer before split": (
        [_q("q1", ["x"], answer=[2], data_split=5)],
        "1: field 'answer' must be a list of strings",
    ),
    "split": ([_q("q1", ["x"], data_split=5)], "1: field 'data_split' must be a string, got int"),
}


@pytest.mark.parametrize("case", sorted(BAD_QUESTIONS))
def test_both_loaders_refuse_bad_questions_alike(tmp_path, case):
    rows, message = BAD_QUESTIONS[case]
    q = write_jsonl(tmp_path / "q.jsonl", rows)
    t = write_jsonl(tmp_path / "t.jsonl", QTYPES)
    errors = []
    for load in (load_answer_key, load_infoseek):
        with pytest.raises(UserError) as err:
            load(q, t)
        errors.append(str(err.value))
    assert errors == [f"{q}:{message}"] * 2


def test_both_paths_refuse_untyped_questions_and_empty_references_alike(tmp_path):
    q = write_jsonl(tmp_path / "q.jsonl", [_q("q1", ["x"]), _q("q7", None)])
    p = write_jsonl(tmp_path / "p.jsonl", [{"data_id": "q7", "prediction": "x"}])
    types = [QTYPES[0], {"data_id": "q7", "question_type": "String"}]
    errors = []
    for qtypes, expected in (
        (types[:1], f"{tmp_path / 't.jsonl'}: question 'q7' has no question type"),
        (types, f"{q}:2: question 'q7' has an empty answer_eval"),
        ([QTYPES[0], {"data_id": "q7", "question_type": ""}], "question 'q7' has no question "),
    ):
        t = write_jsonl(tmp_path / "t.jsonl", qtypes)
        for run in (_fast, _typed):
            with pytest.raises(UserError) as err:
                run(p, q, t)
            errors.append(str(err.value))
        assert errors[-1] == errors[-2] and errors[-1].startswith(expected)
