"""Where the reader's evidence comes from (`retrieval.mode`): the index, nothing, or the gold
entity's passages; text-only questions; ${RAGVQA_DATA} in pipeline paths."""

from __future__ import annotations

import json

import pytest

from ragvqa.errors import UserError
from ragvqa.kb.store import KBStore
from ragvqa.pipeline import Pipeline
from ragvqa.run.records import read_metrics, read_records
from ragvqa.run.runner import BenchRunner, BenchSpec
from ragvqa.types import VQAQuery


def spec(world) -> BenchSpec:
    files = {
        "questions": str(world["infoseek_questions"]),
        "qtypes": str(world["infoseek_qtypes"]),
        "withkb": str(world["infoseek_withkb"]),
    }
    return BenchSpec("infoseek", files, images={"oven": str(world["infoseek_images"])}, limit=9)


def test_mode_none_reads_no_evidence_and_loads_no_retriever(world, vllm_engine, tmp_path):
    # no encoder, KB or index to use: touching any of them would fail
    given = {"generator": vllm_engine, "encoder": None, "index": None, "kb": None}
    pipe = Pipeline.load(world["pipeline"], ["retrieval.mode=none"], components=given)
    with pytest.raises(UserError, match="needs passages, and retrieval.mode is none"):
        pipe.check()  # the demo's template reads passages
    pipe = pipe.with_prompt("answer/no_retrieval@1")
    pipe.check()
    out = tmp_path / "run"
    metrics = BenchRunner(pipe, spec(world), out, cache=tmp_path / "c", progress=False).run()
    assert "retrieval" not in metrics and metrics["retrieval_mode"] == "none"
    assert metrics["final_score"] == metrics["official"]["final_score"]  # headline at the top
    records = read_records(out)
    assert len(records) == 9 and all(r.status == "ok" for r in records)
    assert all(r.retrieved == [] and r.evidence == [] for r in records)
    user = next(m["text"] for m in records[0].prompt if m["role"] == "user")
    assert "[1]" not in user and records[0].question in user


def test_mode_oracle_reads_the_gold_entity(world, vllm_engine, tmp_path):
    pipe = Pipeline.load(
        world["pipeline"], ["retrieval.mode=oracle"], components={"generator": vllm_engine}
    )
    with pytest.raises(UserError, match="only a benchmark knows"):
        pipe.retrieve_batch([VQAQuery("q", "Which city?")])
    out = tmp_path / "run"
    metrics = BenchRunner(pipe, spec(world), out, cache=tmp_path / "c", progress=False).run()
    assert "retrieval" not in metrics and not pipe.loaded("encoder")
    kb = KBStore(world["root"] / "kb")
    entity = {p.passage_id: p.entity_id for p in kb.passages(range(len(kb)))}
    gold = {}
    for line in world["infoseek_withkb"].read_text().splitlines():
        row = json.loads(line)
        gold[row["data_id"]] = row["entity_id"]
    for r in read_records(out):
        assert len(r.retrieved) == 1  # reader.passages of the demo pipeline
        assert {entity[p["passage_id"]] for p in r.retrieved} == {gold[r.data_id]}
        assert r.gold_rank == 0
    assert read_metrics(out)["counts"]["answered"] == 9


def test_a_question_without_an_image_is_a_text_only_query(world, vllm_engine):
    pipe = Pipeline.load(world["pipeline"], components={"generator": vllm_engine})
    answer = pipe.answer(None, "Which city is the red circle tower in?")
    assert answer.error is None and answer.image is None and len(answer.passages) == 5
    # an image named but not found is still an error
    missing = pipe.answer_batch([VQAQuery("m", "Which city?", image_id="oven_404")])
    assert missing[0].error == "image not found"


def test_pipeline_paths_under_the_data_root(world, tmp_path, monkeypatch):
    folder = tmp_path / "p.yaml"
    folder.write_text(f"base: {world['pipeline']}\nkb:\n  path: ${{RAGVQA_DATA}}/kb\n")
    monkeypatch.setenv("RAGVQA_DATA", str(tmp_path / "data"))
    pipe = Pipeline.load(folder)
    assert pipe.path(pipe.section("kb")["path"]) == str(tmp_path / "data" / "kb")
    monkeypatch.delenv("RAGVQA_DATA")
    with pytest.raises(UserError, match=r"under \$\{RAGVQA_DATA\}: set RAGVQA_DATA"):
        pipe.path(pipe.section("kb")["path"])
    with pytest.raises(UserError, match="retrieval.mode .*expected one of index, none, oracle"):
        Pipeline.load(world["pipeline"], ["retrieval.mode=gold"])


def test_a_shipped_pipeline_loads_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pipelines/ folder here
    pipe = Pipeline.load("real-text-oracle")
    assert pipe.config["name"] == "real-text-oracle" and pipe.retrieval_mode == "oracle"
    assert pipe.template.ref == "answer/name_plain@1"
    with pytest.raises(UserError, match="config file not found"):
        Pipeline.load("real-text-oracl")
