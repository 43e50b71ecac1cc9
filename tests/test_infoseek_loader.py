"""Loading the official InfoSeek files into typed examples, and refusing bad ones."""

from __future__ import annotations

import pytest
from conftest import write_jsonl

from ragvqa.data.infoseek import load_infoseek
from ragvqa.errors import UserError
from ragvqa.types import NumericRange

QUESTIONS = [
    {
        "data_id": "infoseek_val_00000000",
        "image_id": "oven_04990048",
        "question": "What is it for?",
        "answer": ["energy transformation"],
        "answer_eval": ["energy conversion", "conversion"],
        "data_split": "val_unseen_question",
    },
    {
        "data_id": "infoseek_val_00000002",
        "image_id": "oven_04967661",
        "question": "How many days?",
        "answer": ["6.5-7.0"],
        "answer_eval": [{"wikidata": 6.75, "range": [6.5, 7.0]}],
        "data_split": "val_unseen_entity",
    },
    {
        "data_id": "infoseek_val_00000003",
        "image_id": "oven_05001968",
        "question": "When?",
        "answer": ["1826"],
        "answer_eval": {"wikidata": 1826, "range": [1825, "1827"]},
        "data_split": "val_unseen_entity",
    },
]
QTYPES = [
    {"data_id": "infoseek_val_00000000", "question_type": "String"},
    {"data_id": "infoseek_val_00000002", "question_type": "Numerical"},
    {"data_id": "infoseek_val_00000003", "question_type": "Numerical"},
]


@pytest.fixture
def files(tmp_path):
    return (
        write_jsonl(tmp_path / "q.jsonl", QUESTIONS),
        write_jsonl(tmp_path / "t.jsonl", QTYPES),
        write_jsonl(
            tmp_path / "kb.jsonl",
            [{"data_id": "infoseek_val_00000002", "entity_id": "Q132576", "entity_text": "Impala"}],
        ),
    )


def test_loads_types_ranges_and_entities(files):
    q, t, kb = files
    examples = load_infoseek(q, t, kb)
    assert [e.example_id for e in examples] == [r["data_id"] for r in QUESTIONS]
    first, second, third = examples
    assert first.answer_eval == ("energy conversion", "conversion")
    assert first.numeric_range is None and first.question_type == "String"
    assert first.image_id == "oven_04990048" and first.image_dataset == "oven"
    assert second.numeric_range == NumericRange(6.5, 7.0)
    assert second.entity_ids == ("Q132576",) and second.entity_names == ("Impala",)
    assert third.numeric_range == NumericRange(1825.0, 1827.0)  # bare dict, string end
    assert first.entity_ids == ()
    assert second.source.endswith("q.jsonl:2")


def test_without_qtypes_ranges_are_still_read(files):
    q, _, _ = files
    examples = load_infoseek(q)
    assert examples[1].numeric_range == NumericRange(6.5, 7.0)
    assert examples[0].question_type == ""


def test_missing_question_type(tmp_path, files):
    q, _, _ = files
    t = write_jsonl(tmp_path / "t2.jsonl", QTYPES[:2])
    with pytest.raises(UserError, match="'infoseek_val_00000003' has no question type"):
        load_infoseek(q, t)


def test_numerical_answer_without_range(tmp_path):
    bad = dict(QUESTIONS[1], answer_eval=["6.5"])
    q = write_jsonl(tmp_path / "q.jsonl", [QUESTIONS[0], bad])
    with pytest.raises(UserError) as err:
        load_infoseek(q, write_jsonl(tmp_path / "t.jsonl", QTYPES[:2]))
    assert str(err.value) == f"{q}:2: numerical answer without a range [low, high]"


def test_malformed_line_names_file_and_line(tmp_path):
    q = tmp_path / "q.jsonl"
    q.write_text('{"data_id": "a", "question": "x"}\n\n{"data_id": "b", \n', encoding="utf-8")
    with pytest.raises(UserError, match=r"q\.jsonl:3: malformed JSON"):
        load_infoseek(q)


def test_wrong_types_and_duplicates(tmp_path):
    q = write_jsonl(tmp_path / "q.jsonl", [{"data_id": 7, "question": "x"}])
    with pytest.raises(UserError, match=r":1: field 'data_id' must be a string"):
        load_infoseek(q)
    q = write_jsonl(tmp_path / "q2.jsonl", [QUESTIONS[0], QUESTIONS[0]])
    with pytest.raises(UserError, match=r":2: duplicate data_id"):
        load_infoseek(q)
    q = write_jsonl(tmp_path / "q3.jsonl", [["not", "an", "object"]])
    with pytest.raises(UserError, match=r":1: expected a JSON object, got list"):
        load_infoseek(q)


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_infoseek(tmp_path / "nope.jsonl")
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="not UTF-8"):
        load_infoseek(binary)


def test_bad_bytes_are_reported_on_their_line_and_a_bom_is_tolerated(tmp_path):
    import json

    lines = [json.dumps(QUESTIONS[0]).encode(), b'{"data_id": "caf\xe9"}']
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(UserError, match=r"bad.jsonl:2: not UTF-8 text"):
        load_infoseek(bad)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + lines[0] + b"\n")
    assert [e.example_id for e in load_infoseek(bom)] == [QUESTIONS[0]["data_id"]]
