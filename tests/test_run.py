"""The run machinery without models: the stage cache and the generation journal."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ragvqa.run.cache import StageCache
from ragvqa.run.journal import Journal
from ragvqa.types import (
    Answer,
    ChatMessage,
    ChatPrompt,
    ImagePart,
    Passage,
    RetrievedPassage,
    TextPart,
)


def test_stage_cache_round_trip_and_a_damaged_entry_is_computed_again(tmp_path):
    cache = StageCache(tmp_path)
    vectors = np.arange(8, dtype=np.float32).reshape(2, 1, 4)
    cache.save_vectors("k", vectors, np.array([True, False]))
    got, present = cache.load_vectors("k")
    assert np.array_equal(got, vectors) and present.tolist() == [True, False]
    assert [p.name for p in (tmp_path / "stages").iterdir()] == ["encode-k.npz"]  # no temp left
    assert StageCache(tmp_path, enabled=False).load_vectors("k") is None
    path = cache.path("encode", "k", ".npz")
    path.write_bytes(path.read_bytes()[:40])  # cut short, as a full disk leaves it
    assert cache.load_vectors("k") is None
    cache.path("search", "s", ".jsonl").write_text('{"query_id": "a", "passa')
    assert cache.load_results("search", "s", kb=None) is None


def retrieved(query_id: str) -> Answer:
    passages = tuple(
        RetrievedPassage(Passage(f"{query_id}-p{i}", f"text {i}", title=f"T{i}"), 1.0 - i, i)
        for i in range(3)
    )
    return Answer(query_id, "When?", "/img.jpg", passages=passages, timings={"encode": 0.5})


def read(answer: Answer, text: str) -> Answer:
    prompt = ChatPrompt(
        (
            ChatMessage("system", (TextPart("Answer briefly."),)),
            ChatMessage("user", (ImagePart(answer.image), TextPart("T0 T1 When?"))),
        ),
        template="answer/x@1",
        template_hash="abc",
        truncated_passages=1,
    )
    return replace(
        answer,
        text=text,
        raw_output=f" {text}\n",
        evidence=answer.passages[:2],
        prompt=prompt,
        template="answer/x@1",
        template_hash="abc",
        model="m",
        timings={**answer.timings, "generate": 0.25},
    )


def test_journal_gives_back_the_answers_it_was_given(tmp_path):
    journal = Journal(tmp_path / "work" / "answers.jsonl")
    before = [retrieved("a"), retrieved("b"), retrieved("c")]
    done = [read(before[0], "1900"), read(before[1], "Rome")]
    journal.append("key1", done)
    assert journal.load("key1", before) == {"a": done[0], "b": done[1]}
    # a kill in the middle of the next append leaves half a line: it is ignored
    with journal.path.open("a") as fh:
        fh.write('{"key": "key1", "record": {"data_id": "c", "te')
    assert set(journal.load("key1", before)) == {"a", "b"}


def test_a_journal_of_another_configuration_is_set_aside(tmp_path):
    journal = Journal(tmp_path / "answers.jsonl")
    first = retrieved("a")
    journal.append("old", [read(first, "x")])
    assert journal.load("new", [first]) == {}
    assert not journal.path.exists()
    assert [p.suffix for p in tmp_path.iterdir()] == [".stale"]
