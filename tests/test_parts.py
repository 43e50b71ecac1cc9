"""The Pipeline's parts: typed by their Protocols, the query vectors handed to the reranker,
one `variant` that shares what it may, and a stage cache that knows no Pipeline."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import numpy as np
import pytest

from ragvqa import components, parts
from ragvqa.errors import UserError
from ragvqa.pipeline import Pipeline
from ragvqa.rerank.fusion import permute
from ragvqa.types import Generation, VQAQuery

PACKAGE = Path(components.__file__).parent


class Recorder:
    """A reranker that keeps what it was handed and reverses each result."""

    def __init__(self) -> None:
        self.vectors: list = []

    def rerank_batch(self, queries, results, top_m=None, vectors=None):
        self.vectors.append(vectors)
        return [permute(r, range(len(r.passages) - 1, -1, -1), top_m) for r in results]


class Scripted:
    model = "scripted"

    def __init__(self) -> None:
        self.closed = 0

    def generate(self, prompts, sampling):
        return [Generation("Paris", self.model) for _ in prompts]

    def close(self) -> None:
        self.closed += 1


def _images(world) -> list[str]:
    return [str(p) for p in sorted(world["infoseek_images"].rglob("*.jpg"))[:3]]


def test_the_parts_are_typed_by_their_protocols():
    def hints(name):
        part = getattr(components.Components, name)
        return typing.get_type_hints(getattr(part, "func", None) or part.fget, vars(components))

    hints = {name: hints(name) for name in ("encoder", "index", "reader", "reranker", "template")}
    assert hints["encoder"]["return"] is parts.QueryEncoder
    assert hints["index"]["return"] is parts.Index
    assert hints["reader"]["return"] is parts.Reader
    assert hints["reranker"]["return"] == parts.Reranker | None
    assert hints["template"]["return"] is parts.Template


def test_the_reranker_gets_the_query_vectors_of_the_encode_stage(world, tmp_path):
    from ragvqa.run.cache import StageCache

    recorder = Recorder()
    queries = [
        VQAQuery(f"q{i}", "Where is this?", image_path=p) for i, p in enumerate(_images(world))
    ]
    pipe = Pipeline.load(
        world["pipeline"], ["rerank={type: ret_sections}"], components={"reranker": recorder}
    )
    cache = StageCache(tmp_path / "cache")
    timings: dict = {}
    first = pipe.retrieve_batch(queries, cache=cache, timings=timings)
    (handed,) = recorder.vectors
    assert np.array_equal(handed, pipe.encode(queries)[0])
    plain = Pipeline.load(world["pipeline"]).retrieve_batch(queries)
    ids = [[p.passage.passage_id for p in a.passages] for a in first]
    assert ids == [[p.passage.passage_id for p in reversed(a.passages)] for a in plain]
    again = pipe.retrieve_batch(queries, cache=cache, timings=timings)  # every stage cached
    assert timings["rerank"]["cached"] and len(recorder.vectors) == 1
    assert [a.passages for a in again] == [a.passages for a in first]


def test_ret_sections_reads_the_vectors_it_is_given_instead_of_encoding(world):
    from ragvqa.rerank.ret_sections import RetSectionReranker

    pipe = Pipeline.load(world["pipeline"])
    queries = [VQAQuery("a", "Where is this?", image_path=_images(world)[0])]
    vectors, _ = pipe.encode(queries)
    results = pipe.search(["a"], vectors)
    reranker = RetSectionReranker(pipe.encoder, pipe.kb, top_entities=2)
    own = reranker.rerank_batch(queries, results, 5)  # encodes the query itself
    calls = []
    encode = pipe.encoder.encode_queries
    pipe.encoder.encode_queries = lambda qs: calls.append(qs) or encode(qs)
    given = reranker.rerank_batch(queries, results, 5, vectors)
    del pipe.encoder.encode_queries
    assert calls == []  # the stage's vectors were used
    assert [p.passage.passage_id for p in given[0].passages] == [
        p.passage.passage_id for p in own[0].passages
    ]
    assert np.allclose([p.score for p in given[0].passages], [p.score for p in own[0].passages])


def test_a_variant_shares_the_loaded_parts_its_settings_keep(world):
    reader = Scripted()
    pipe = Pipeline.load(world["pipeline"], components={"generator": reader})  # the old name
    assert pipe.reader is reader and pipe.generator is reader
    _ = pipe.encoder, pipe.index
    other = pipe.variant(prompt="answer/evidence_fallback@1", top_k=3)
    assert other.template.ref == "answer/evidence_fallback@1" and other.top_k == 3
    assert other.config["reader"]["prompt"] == "answer/evidence_fallback@1"
    assert other.reader is reader and other.encoder is pipe.encoder and other.index is pipe.index
    assert other._turns is pipe._turns and other.startup is pipe.startup
    assert pipe.template.ref != other.template.ref and pipe.top_k != 3  # the first is as it was
    dotted = pipe.variant("retrieval.top_k=4", "encoder.batch_size=2")
    assert dotted.top_k == 4 and dotted.reader is reader
    assert not dotted.loaded("encoder") and not dotted.loaded("index")  # built from other settings
    assert pipe.with_prompt("answer/evidence_fallback@1").template.ref == other.template.ref
    with pytest.raises(UserError, match="unknown variant setting 'topk'; did you mean 'top_k'"):
        pipe.variant(topk=3)
    with pytest.raises(UserError, match="retrieval.top_k"):
        pipe.variant("retrieval.top_k=0")


def test_closing_a_variant_closes_the_family_once(world):
    pipe = Pipeline.load(world["pipeline"], ["reader.generator={type: vllm, model: m}"])
    reader = Scripted()
    pipe.generator = reader  # as if built by the pipeline: its close() is the pipeline's
    other = pipe.variant(prompt="answer/evidence_fallback@1")
    other.close()
    pipe.close()
    assert reader.closed == 1
    with pytest.raises(UserError, match="this pipeline is closed"):
        pipe.answer(None, "Which city?")
    with pytest.raises(UserError, match="this pipeline is closed"):
        other.read_batch([])


def test_the_stage_cache_knows_no_pipeline_and_no_one_copies_dicts():
    source = (PACKAGE / "cached_stages.py").read_text()
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported.isdisjoint({"ragvqa.pipeline", "ragvqa.components"}), imported
    for name in ("pipeline.py", "components.py", "variants.py", "cached_stages.py"):
        text = (PACKAGE / name).read_text()
        assert "__dict__" not in text and "object.__new__" not in text, name
    assert "hasattr(reranker" not in (PACKAGE / "pipeline.py").read_text()
