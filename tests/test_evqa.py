"""E-VQA: loader, official preprocessing and matching, aggregation; hand-worked values."""

from __future__ import annotations

import pytest
from conftest import EVQA_COLUMNS, write_evqa_csv

from ragvqa.data.evqa import load_evqa
from ragvqa.errors import UserError
from ragvqa.eval.evqa_scorer import score_evqa
from ragvqa.eval.evqa_text import (
    EmptyReference,
    multi_answer_match,
    preprocess_answer,
    single_answer_match,
)
from ragvqa.types import BenchmarkExample, Prediction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is the Menger family.", "menger family"),
        ("three", "3"),
        ("U.S.A.", "usa"),
        ("Dont", "don't"),
        ("True", "yes"),
        ("contradiction", "no"),
        ("none", "0"),
        ("<extra_id_0> Ten", "10"),
        ("x <extra_id_0> y", "x extraid0 y"),  # not a prefix: kept, its punctuation deleted
        ("‘quoted’ ´word` snake_case", "quoted word snakecase"),
        ("line\nbreak\ttab", "line break tab"),
        ("It's", "its"),
    ],
)
def test_preprocess_answer(text, expected):
    assert preprocess_answer(text) == expected


def test_span_prefix_removes_every_occurrence():
    # Official quirk: when the answer starts with the prefix, every occurrence is removed.
    assert preprocess_answer("<extra_id_0> a <extra_id_0> b") == "b"


def test_single_answer_match():
    assert single_answer_match("the Menger family", "The answer is the Menger family.")
    assert single_answer_match("3", "three")
    assert not single_answer_match("3", "thirty")
    with pytest.raises(EmptyReference):
        single_answer_match("The", "the")


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("red, green and blue", True),  # 3/3
        ("red and green", True),  # 2/3
        ("red", False),  # 1/3
        ("Red And Green", False),  # ' And ' is not split (case-sensitive): 'red and green'
        ("red & green", True),
        ("red, green, blue, yellow, pink", True),  # 3/5 = 0.6
        ("red, yellow, pink, white", False),  # 1/6
    ],
)
def test_multi_answer_match(candidate, expected):
    assert multi_answer_match("red&&green&&blue", candidate) is expected


def test_multi_answer_iou_exactly_half_passes():
    assert multi_answer_match("red&&green", "red and blue") is False  # 1/3
    assert multi_answer_match("red&&green", "red") is True  # 1/2


ROWS = [
    {
        "question": "What colour?",
        "answer": "red&&green&&blue",
        "question_type": "multi_answer",
        "dataset_image_ids": "abc123|def456",
        "dataset_name": "landmarks",
        "wikipedia_url": "https://en.wikipedia.org/wiki/Rose",
        "wikipedia_title": "Rose",
        "encyclopedic_vqa_split": "test",
    },
    {
        "question": "When built?",
        "answer": "1850|1851",
        "question_type": "templated",
        "dataset_image_ids": "1234",
        "dataset_name": "inaturalist",
    },
    {
        "question": "How many?",
        "answer": "3",
        "question_type": "automatic",
        "dataset_image_ids": "5678",
        "dataset_name": "inaturalist",
        "evidence": 'A long, "quoted"\nmulti-line evidence',
    },
    {
        "question": "Who founded the city where it is?",
        "answer": "Romulus",
        "question_type": "2_hop",
        "dataset_image_ids": "aaa",
        "dataset_name": "landmarks",
        "wikipedia_url": "https://en.wikipedia.org/wiki/A|https://en.wikipedia.org/wiki/Rome",
    },
]


def test_load_evqa(tmp_path):
    examples = load_evqa(write_evqa_csv(tmp_path / "test.csv", ROWS))
    assert [e.example_id for e in examples] == ["0", "1", "2", "3"]
    first = examples[0]
    assert first.answers == ("red&&green&&blue",)
    assert first.image_ids == ("abc123", "def456") and first.image_id == "abc123"
    assert first.image_dataset == "landmarks" and first.entity_names == ("Rose",)
    assert examples[1].answers == ("1850", "1851")
    assert examples[3].entity_ids == (
        "https://en.wikipedia.org/wiki/A",
        "https://en.wikipedia.org/wiki/Rome",
    )
    # row 2 has a multi-line quoted cell: row 3 starts on physical line 6
    assert examples[3].source.endswith("test.csv:6")


def test_load_evqa_bad_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nq,a\n", encoding="utf-8")
    with pytest.raises(UserError, match="bad.csv:1: missing column"):
        load_evqa(bad)
    short = tmp_path / "short.csv"
    short.write_text(",".join(EVQA_COLUMNS) + "\n" + "q,a,id\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"short.csv:2: expected {len(EVQA_COLUMNS)} fields, got 3"):
        load_evqa(short)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(UserError, match="empty CSV"):
        load_evqa(empty)


def _ex(i, answer, qtype):
    return BenchmarkExample(
        str(i),
        "evqa",
        f"question {i}",
        answers=tuple(answer.split("|")),
        question_type=qtype,
        source=f"t.csv:{i + 2}",
    )


def test_score_evqa_aggregates_by_hand():
    examples = [
        _ex(0, "red&&green&&blue", "multi_answer"),
        _ex(1, "1850|1851", "templated"),
        _ex(2, "3", "automatic"),
        _ex(3, "Romulus", "2_hop"),
        _ex(4, "Remus", "2_hop"),
    ]
    preds = [
        Prediction("0", "red and green"),  # 1 (IoU 2/3)
        Prediction("1", "In 1851."),  # 0: 'in 1851' matches neither alternative
        Prediction("2", "three"),  # 1
        Prediction("3", "Romulus"),  # 1
        Prediction("4", "Romulus"),  # 0
    ]
    result = score_evqa(preds, examples)
    m = result.metrics
    # single-hop: [1, 0, 1] -> 66.67; two-hop: [1, 0] -> 50.0; all 3/5 -> 60.0
    assert (m["single_hop"], m["two_hop"], m["all"]) == (66.67, 50.0, 60.0)
    assert m["by_question_type"] == {
        "templated": 0.0,
        "automatic": 100.0,
        "multi_answer": 100.0,
        "2_hop": 50.0,
    }
    assert m["counts"]["single_hop"] == 3 and m["counts"]["2_hop"] == 2
    assert m["bem"] is None and m["scoring"] == "exact match only"
    assert [s.method for s in result.per_example] == ["exact", "none", "exact", "exact", "none"]


def test_score_evqa_empty_group_is_null_and_alternatives_take_max():
    examples = [_ex(0, "Paris|Lutetia", "automatic")]
    m = score_evqa([Prediction("0", "lutetia")], examples).metrics
    assert m["all"] == 100.0 and m["two_hop"] is None and m["by_question_type"]["2_hop"] is None


def test_score_evqa_bad_references_are_user_errors():
    with pytest.raises(UserError, match="t.csv:2: question 0: reference answer 'The'"):
        score_evqa([Prediction("0", "x")], [_ex(0, "The", "automatic")])
    with pytest.raises(UserError, match="reference answer is empty"):
        score_evqa([Prediction("0", "Paris")], [_ex(0, "Paris|", "automatic")])
    with pytest.raises(UserError, match="unknown question_type 'list'"):
        score_evqa([Prediction("0", "x")], [_ex(0, "x", "list")])
