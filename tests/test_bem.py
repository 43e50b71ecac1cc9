"""BEM on tiny random BERT checkpoints built in the real HF format (vocab, config, safetensors).

The classifier head of each checkpoint is set so P(equivalent) is known by hand; the input
layout is checked token by token against the vocabulary written in conftest.
"""

from __future__ import annotations

import json

import pytest
from conftest import build_bem

from ragvqa.errors import UserError
from ragvqa.eval.bem import BemModel
from ragvqa.eval.evqa_scorer import score_evqa
from ragvqa.types import BenchmarkExample, Prediction


def test_input_layout_is_official(bem_dir):
    bem = BemModel(bem_dir)
    ids, segments = bem.build_inputs("When was it built?", "in the 1850s", "Paris")
    # [CLS] paris [SEP] in the 1850 ##s [SEP] when was it built ? [SEP] (ids from BEM_VOCAB)
    assert ids == [2, 16, 3, 22, 8, 23, 24, 3, 18, 19, 20, 21, 26, 3]
    assert segments == [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]


def test_long_inputs_are_trimmed_to_512(bem_dir):
    bem = BemModel(bem_dir)
    ids, segments = bem.build_inputs("red " * 600, "blue", "green " * 10)
    assert len(ids) == len(segments) == 512
    assert ids.count(3) == 3 and bem.truncated == 1
    assert segments.count(0) == 12  # candidate kept whole: CLS + 10 + SEP


def test_threshold_is_inclusive(bem_dir, bem_no_dir):
    # softmax([0, 0])[1] = 0.5 exactly: equivalent; softmax([0, -0.001])[1] < 0.5: not.
    assert BemModel(bem_dir).probabilities([("q", "red", "blue")]) == [pytest.approx(0.5)]
    assert BemModel(bem_no_dir).probabilities([("q", "red", "blue")])[0] < 0.5


def _examples():
    return [
        BenchmarkExample(
            "0", "evqa", "what colour is the flower?", answers=("red",), question_type="automatic"
        ),
        BenchmarkExample(
            "1", "evqa", "what colour?", answers=("red&&blue",), question_type="multi_answer"
        ),
        BenchmarkExample("2", "evqa", "what city?", answers=("paris",), question_type="2_hop"),
    ]


class CountingBem:
    """Wraps a real BEM model and records what it is asked."""

    def __init__(self, model):
        self.model, self.name, self.asked = model, model.name, []

    def probabilities(self, triples):
        self.asked.extend(triples)
        return self.model.probabilities(triples)


def test_bem_is_asked_only_when_exact_match_fails(bem_dir):
    bem = CountingBem(BemModel(bem_dir))
    preds = [Prediction("0", "Red"), Prediction("1", "green"), Prediction("2", "rome")]
    result = score_evqa(preds, _examples(), bem)
    assert [s.score for s in result.per_example] == [1, 1, 1]
    assert [s.method for s in result.per_example] == ["exact", "bem", "bem"]
    # multi_answer references reach BEM with '&&' replaced by ','
    assert sorted(bem.asked) == [
        ("what city?", "paris", "rome"),
        ("what colour?", "red,blue", "green"),
    ]
    assert result.metrics["bem"] == str(bem_dir)
    assert result.metrics["scoring"] == "exact match, then BEM"


def test_bem_that_says_no_keeps_exact_match_scores(bem_no_dir):
    preds = [Prediction("0", "Red"), Prediction("1", "green"), Prediction("2", "rome")]
    result = score_evqa(preds, _examples(), BemModel(bem_no_dir))
    assert [s.score for s in result.per_example] == [1, 0, 0]
    assert result.metrics["all"] == 33.33


def test_refuses_two_segment_bert(tmp_path):
    build_bem(tmp_path / "two", type_vocab_size=2)
    with pytest.raises(UserError, match="type_vocab_size >= 3"):
        BemModel(tmp_path / "two")


def test_refuses_non_bert_and_missing_config(tmp_path, bem_dir):
    with pytest.raises(UserError, match="no config.json"):
        BemModel(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((bem_dir / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    with pytest.raises(UserError, match="must be a BERT classifier"):
        BemModel(other)


def test_refuses_pickle_only_checkpoint(tmp_path, bem_dir):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "vocab.txt"):
        (pickled / name).write_bytes((bem_dir / name).read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded: pickles are never opened")
    with pytest.raises(UserError, match="cannot load BEM model"):
        BemModel(pickled)
