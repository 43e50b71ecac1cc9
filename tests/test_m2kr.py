"""M2KR loading through `datasets`, from a local folder laid out like the hub repository."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ragvqa.data.m2kr import load_m2kr
from ragvqa.errors import UserError


@pytest.fixture
def m2kr_dir(tmp_path):
    infoseek = pa.table(
        {
            "question_id": ["infoseek_val_00000000", "infoseek_val_00000002"],
            "image_id": ["oven_04990048", "oven_04967661"],
            "question": ["What is it for?", "How many days?"],
            "answers": [["energy transformation"], ["6.5-7.0"]],
            "answer_eval": [["energy conversion", "conversion"], []],
            "data_split": ["val_unseen_question", "val_unseen_entity"],
            "wikidata_range": [None, [6.5, 7.0]],
            "entity_id": ["Q178185", "Q132576"],
            "entity_text": ["Heat engine", "Impala"],
            "question_type": ["String", "Numerical"],
            "img_path": ["oven_04990048.jpg", "oven_04967661.jpg"],
        }
    )
    evqa = pa.table(
        {
            "question_id": ["EVQA_0", "EVQA_1"],
            "question": ["What colour?", "When built?"],
            "answers": [["red"], ["1850"]],
            "question_type": ["automatic", "templated"],
            "img_path": ["inat/val/a.jpg", "google-landmark/train/a/b/c/abc.jpg"],
            "pos_item_ids": [["passage_9"], ["passage_4"]],
        }
    )
    (tmp_path / "Infoseek_data").mkdir()
    (tmp_path / "EVQA_data").mkdir()
    pq.write_table(infoseek, tmp_path / "Infoseek_data" / "test-00000-of-00001.parquet")
    pq.write_table(evqa, tmp_path / "EVQA_data" / "valid-00000-of-00001.parquet")
    (tmp_path / "oven_04990048.jpg").write_bytes(b"jpeg")
    return tmp_path


def test_infoseek_from_local_hub_layout(m2kr_dir):
    examples = load_m2kr("infoseek", "test", source=str(m2kr_dir), image_root=m2kr_dir)
    first, second = examples
    assert first.example_id == "infoseek_val_00000000"
    assert first.answer_eval == ("energy conversion", "conversion")
    assert first.image_path == str(m2kr_dir / "oven_04990048.jpg")
    assert second.image_path is None  # not on disk
    assert second.numeric_range is not None and second.numeric_range.high == 7.0
    assert second.entity_ids == ("Q132576",) and second.entity_names == ("Impala",)


def test_evqa_from_local_hub_layout(m2kr_dir):
    examples = load_m2kr("evqa", "valid", source=str(m2kr_dir))
    assert [e.example_id for e in examples] == ["EVQA_0", "EVQA_1"]
    assert examples[1].answers == ("1850",) and examples[1].question_type == "templated"
    assert examples[0].entity_ids == ("passage_9",)


def test_unknown_dataset_and_missing_split(m2kr_dir):
    with pytest.raises(UserError, match="unknown M2KR dataset 'okvqa'"):
        load_m2kr("okvqa", "test", source=str(m2kr_dir))
    with pytest.raises(UserError, match="no EVQA_data/train"):
        load_m2kr("evqa", "train", source=str(m2kr_dir))
