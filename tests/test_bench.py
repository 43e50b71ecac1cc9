"""`ragvqa bench` on the offline demo world: run files, official scores, stage cache, bad
examples, and kill -9 in every stage followed by a rerun."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import infoseek_bench
from PIL import Image
from typer.testing import CliRunner

from ragvqa.benchmarks import get_benchmark
from ragvqa.cli.main import app
from ragvqa.pipeline import Pipeline
from ragvqa.run.records import read_metrics, read_records
from ragvqa.run.runner import BenchRunner, BenchSpec

HERE = Path(__file__).resolve().parent


def infoseek_spec(world, **kw) -> BenchSpec:
    files = {
        "questions": str(world["infoseek_questions"]),
        "qtypes": str(world["infoseek_qtypes"]),
        "withkb": str(world["infoseek_withkb"]),
    }
    return BenchSpec("infoseek", files, images={"oven": str(world["infoseek_images"])}, **kw)


def pipeline(world, engine, overrides=()) -> Pipeline:
    """The world's pipeline with the session's vLLM engine (same model folder) as reader."""
    return Pipeline.load(world["pipeline"], list(overrides), components={"generator": engine})


@pytest.fixture(scope="module")
def reference(world, vllm_engine, tmp_path_factory):
    """An uninterrupted run: the run directory."""
    out = tmp_path_factory.mktemp("ref") / "run"
    pipe = pipeline(world, vllm_engine, ["reader.batch_size=8"])
    BenchRunner(pipe, infoseek_spec(world), out, cache=out.parent / "cache", progress=False).run()
    return out


def strip_timings(records):
    return [{k: v for k, v in r.to_json().items() if k != "timings"} for r in records]


def test_run_directory_holds_every_answer_and_official_scores(world, reference, tmp_path):
    records = read_records(reference)
    metrics = read_metrics(reference)
    questions = [json.loads(x) for x in world["infoseek_questions"].read_text().splitlines()]
    assert [r.data_id for r in records] == [q["data_id"] for q in questions]
    assert all(r.status == "ok" and r.template == "answer/evidence_short@1" for r in records)
    assert all(len(r.retrieved) == 5 and len(r.evidence) <= 1 for r in records)
    assert metrics["counts"] == {
        "questions": 30,
        "answered": 30,
        "failed": 0,
        "failed_reasons": {},
        "failed_examples": [],
    }
    # the official numbers are what `ragvqa score` says of the same predictions
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        "".join(
            json.dumps({"data_id": r.data_id, "prediction": r.prediction}) + "\n" for r in records
        )
    )
    result = CliRunner().invoke(
        app,
        ["score", "infoseek", "--predictions", str(preds), "--questions",
         str(world["infoseek_questions"]), "--qtypes", str(world["infoseek_qtypes"])],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["final_score"] == metrics["official"]["final_score"]
    assert scored["unseen_entity_score"] == metrics["official"]["unseen_entity_score"]
    # TREC run: one line per retrieved passage, ranks from 1
    trec = (reference / "run.trec").read_text().splitlines()
    assert len(trec) == 30 * 5
    assert trec[0].split()[1] == "Q0" and trec[0].split()[3] == "1"
    for name in ("config.yaml", "environment.json", "metrics.json"):
        assert (reference / name).is_file()
    env = json.loads((reference / "environment.json").read_text())
    assert "transformers" in env["packages"]


def test_entity_recall_matches_brute_force_search(world, reference):
    """Recall@K recomputed without faiss: dot products with every stored document vector,
    best passage per page, the gold page's rank."""
    from ragvqa.kb.store import KBStore

    metrics = read_metrics(reference)
    records = read_records(reference)
    pipe = Pipeline.load(world["pipeline"])
    kb = KBStore(world["root"] / "kb")
    docs = np.load(world["root"] / "index" / "vectors.f16.npy").astype(np.float32)[:, 0]
    pages = [p.entity_id for p in kb.passages(range(len(kb)))]
    queries = [r for r in records]
    from ragvqa.types import VQAQuery

    vectors = pipe.encoder.encode_queries(
        [VQAQuery(r.data_id, r.question, image_path=r.image) for r in queries]
    )[:, 0]
    hits = {1: 0, 5: 0}
    for r, q in zip(queries, vectors, strict=True):
        scores = docs @ q
        best: dict[str, float] = {}
        for page, s in zip(pages, scores, strict=True):
            best[page] = max(best.get(page, -np.inf), float(s))
        ranking = sorted(best, key=lambda p: -best[p])
        rank = ranking.index(r.gold_entities[0])
        assert (r.gold_rank if r.gold_rank is not None else 99) == (rank if rank < 5 else 99)
        for k in hits:
            hits[k] += rank < k
    recall = metrics["retrieval"]["entity_recall"]
    assert recall["recall@1"] == pytest.approx(100 * hits[1] / 30)
    assert recall["recall@5"] == pytest.approx(100 * hits[5] / 30)


def test_changing_only_the_prompt_reuses_encode_and_search(world, vllm_engine, reference, tmp_path):
    pipe = pipeline(world, vllm_engine, ["reader.batch_size=8"]).with_prompt(
        "answer/evidence_short@1"
    )

    def fail(*a, **k):
        raise AssertionError("encode ran again")

    pipe.encode = fail
    out = tmp_path / "run2"
    cache = reference.parent / "cache"
    metrics = BenchRunner(pipe, infoseek_spec(world), out, cache=cache, progress=False).run()
    assert metrics["timings"]["encode"]["cached"] and metrics["timings"]["search"]["cached"]
    assert not pipe.loaded("encoder")  # the retriever was never loaded
    assert not metrics["timings"]["generate"]["cached"]
    records = read_records(out)
    assert {r.template for r in records} == {"answer/evidence_short@1"}
    assert "prompt: answer/evidence_short@1" in (out / "config.yaml").read_text()
    ref = read_records(reference)
    assert [r.retrieved for r in records] == [r.retrieved for r in ref]


def test_encoding_in_another_dtype_is_not_served_from_the_cache(
    world, vllm_engine, reference, tmp_path
):
    import torch

    assert pipeline(world, vllm_engine).encoder_dtype() == "float32"  # the reference's (CPU)
    pipe = pipeline(world, vllm_engine, ["reader.batch_size=8", "encoder.dtype=bfloat16"])
    assert pipe.encoder_dtype() == "bfloat16"
    cache = reference.parent / "cache"
    metrics = BenchRunner(
        pipe, infoseek_spec(world), tmp_path / "r", cache=cache, progress=False
    ).run()
    assert not metrics["timings"]["encode"]["cached"]
    assert pipe.encoder.model.dtype == torch.bfloat16


def test_bad_examples_are_failed_and_counted_and_the_run_goes_on(world, vllm_engine, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(world["root"] / "infoseek", folder)
    questions = [json.loads(x) for x in (folder / "questions.jsonl").read_text().splitlines()]
    images = folder / "images"

    def image_of(i):
        return images / questions[i]["image_id"][5:7] / f"{questions[i]['image_id']}.jpg"

    image_of(0).unlink()  # missing
    image_of(1).write_bytes(b"")  # empty
    data = image_of(2).read_bytes()
    image_of(2).write_bytes(data[: len(data) - 200])  # truncated inside the scan data
    image_of(3).write_text("not an image at all")  # not an image
    image_of(4).unlink()
    Image.new("1", (20000, 20000)).save(image_of(4).with_suffix(".png"))  # decompression bomb
    questions[5]["question"] = ""  # empty question
    (folder / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    files = {"questions": str(folder / "questions.jsonl"), "qtypes": str(folder / "qtypes.jsonl")}
    spec = BenchSpec("infoseek", files, images={"oven": str(images)}, limit=10)
    out = tmp_path / "run"
    metrics = BenchRunner(
        pipeline(world, vllm_engine), spec, out, cache=tmp_path / "c", progress=False
    ).run()
    records = {r.data_id: r for r in read_records(out)}
    reasons = [records[q["data_id"]].error or "" for q in questions[:10]]
    assert reasons[0] == "image not found"
    assert reasons[1].startswith("image file is empty")
    assert reasons[2].startswith("unreadable image")
    assert reasons[3].startswith("not an image")
    assert reasons[4].startswith("image too large")
    assert reasons[5] == "empty question"
    assert reasons[6:] == ["", "", "", ""]
    assert metrics["counts"]["failed"] == 6 and metrics["counts"]["answered"] == 4
    assert metrics["counts"]["failed_reasons"] == {
        "image not found": 1,
        "image file is empty": 1,
        "unreadable image": 1,
        "not an image": 1,
        "image too large (decompression bomb)": 1,
        "empty question": 1,
    }
    assert all(records[q["data_id"]].score == 0 for q in questions[:6])
    assert all(records[q["data_id"]].status == "failed" for q in questions[:6])


def cli(args, env=None):
    return CliRunner().invoke(app, args, env=env)


def test_bench_cli_errors_are_one_line_and_keep_earlier_work(world, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"kept": true}')
    bad = tmp_path / "q.jsonl"
    first = world["infoseek_questions"].read_text().splitlines()[0]
    bad.write_text(first + '\n{"data_id": \n')
    base = ["bench", "infoseek", "--pipeline", str(world["pipeline"]), "--out", str(run),
            "--images", str(world["infoseek_images"])]  # fmt: skip
    result = cli([*base, "--questions", str(bad), "--qtypes", str(world["infoseek_qtypes"])])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and f"{bad}:2: malformed JSON" in result.output
    assert (run / "metrics.json").read_text() == '{"kept": true}'
    bad.write_bytes(first.encode() + b'\n{"data_id": "caf\xe9"}\n')  # Latin-1, not UTF-8
    result = cli([*base, "--questions", str(bad), "--qtypes", str(world["infoseek_qtypes"])])
    assert result.exit_code == 2 and f"{bad}:2: not UTF-8 text" in result.output
    # a pipeline naming an unknown component
    result = cli(
        [*base, "--questions", str(world["infoseek_questions"]), "--qtypes",
         str(world["infoseek_qtypes"]), "--set", "rerank.type=cross_encodr"]
    )  # fmt: skip
    assert result.exit_code == 2
    assert "unknown reranker 'cross_encodr'" in result.output and "cross_encoder" in result.output
    # no questions file and no RAGVQA_DATA: a pipeline with no benchmarks.yaml beside it
    alone = tmp_path / "alone" / "pipeline.yaml"
    alone.parent.mkdir()
    alone.write_text(world["pipeline"].read_text())
    result = cli(["bench", "evqa", "--pipeline", str(alone)], env={"RAGVQA_DATA": ""})
    assert result.exit_code == 2 and "no questions file" in result.output
    result = cli(["bench", "evqa", "--questions", str(world["evqa_csv"])], env={"RAGVQA_DATA": ""})
    assert result.exit_code == 2 and "no image folder: pass --images" in result.output


def test_an_index_built_for_another_encoder_is_refused(world, tmp_path):
    from ragvqa.fixtures.models import tiny_retriever

    other = tiny_retriever(tmp_path / "other", seed=1)
    result = cli(
        ["bench", "infoseek", "--pipeline", str(world["pipeline"]), "--out", str(tmp_path / "r"),
         "--questions", str(world["infoseek_questions"]), "--qtypes", str(world["infoseek_qtypes"]),
         "--set", f"encoder.model={other}", "--cache", str(tmp_path / "c"),
         "--images", str(world["infoseek_images"])]
    )  # fmt: skip
    assert result.exit_code == 2
    assert "the index was built with encoder" in result.output
    assert result.output.count("\n") == 1


def test_check_against_expected_figures(world, reference, tmp_path, monkeypatch):
    """`--check` on a finished run (its journal is complete, so no engine starts)."""
    from ragvqa.benchmarks.infoseek import InfoSeek

    metrics = read_metrics(reference)
    recall5 = metrics["retrieval"]["entity_recall"]["recall@5"]
    bench_dir = tmp_path / "benchmarks"
    (bench_dir / "infoseek").mkdir(parents=True)
    expected = bench_dir / "infoseek" / "expected.yaml"
    monkeypatch.setattr(InfoSeek, "folder", lambda self: bench_dir / "infoseek")
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    args = infoseek_bench(world, "--out", run, "--set", "reader.batch_size=8",
                          "--cache", reference.parent / "cache", "--check")  # fmt: skip
    for value, code in ((recall5, 0), (recall5 + 5, 1)):
        expected.write_text(
            "runs:\n  - pipeline: demo\n    template: answer/evidence_short@1\n"
            f"    tolerance: 0.5\n    metrics:\n      retrieval.entity_recall.recall@5: {value}\n"
        )
        result = cli(args)
        assert result.exit_code == code, result.output
        assert ("OK" if code == 0 else "FAIL") in result.output


def run_killed(stage: str, args: list[str], env: dict, log: Path) -> tuple[int, str]:
    """Run the kill driver in its own process group; afterwards kill what the SIGKILL left
    behind (vLLM's engine process), as an init system would reap it."""
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "kill_driver.py"), stage, *args],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return code, log.read_text()


# The kill test is about the run machinery (stage cache, journal, atomic outputs), not the
# engine: the reader is the same tiny Llama through transformers in the killed process, so no
# process pays vLLM's ~30 s start-up (vLLM's own lifetime under kill -9 is tests/test_faults.py's).
KILL_OVERRIDES = [
    "rerank.type=ret_sections",
    "rerank.top_entities=3",
    "reader.batch_size=8",
    "reader.generator={type: transformers, model: models/reader, device: cpu}",
]


@pytest.mark.engine  # six `ragvqa bench` processes load the models
def test_kill_9_in_every_stage_then_rerun_gives_the_uninterrupted_results(world, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = infoseek_bench(world, "--out", out, "--cache", cache)
    for override in KILL_OVERRIDES:
        args += ["--set", override]
    # tiny models: one torch thread each, as in this process (tests/conftest.py)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "OMP_NUM_THREADS": "1"}
    for stage in ("encode", "search", "rerank", "generate", "finish", "none"):
        code, log = run_killed(stage, args, env, tmp_path / f"{stage}.log")
        assert code == (0 if stage == "none" else -signal.SIGKILL), (stage, log[-3000:])
        if stage != "none":
            assert not (out / "predictions.jsonl").exists()
    records = read_records(out)
    assert len({r.data_id for r in records}) == len(records) == 30
    # the same answers as an uninterrupted run of the same pipeline, with its own cache
    straight = tmp_path / "straight"
    pipe = Pipeline.load(world["pipeline"], KILL_OVERRIDES)
    BenchRunner(pipe, infoseek_spec(world), straight, cache=tmp_path / "c2", progress=False).run()
    assert strip_timings(records) == strip_timings(read_records(straight))
    a, b = read_metrics(out), read_metrics(straight)
    assert a["official"] == b["official"] and a["retrieval"] == b["retrieval"]
    assert {r.model for r in records} == {str(world["root"] / "models" / "reader")}


def test_shipped_expected_figures_hold_for_the_demo_world(world, reference, shared_engine,
                                                          tmp_path, monkeypatch):  # fmt: skip
    """InfoSeek: the reference run against benchmarks/infoseek/expected.yaml. E-VQA: a whole
    `bench evqa --check` with its files found through RAGVQA_DATA and benchmark.yaml."""
    from ragvqa.cli.bench import check_expected

    infoseek = get_benchmark("infoseek")
    assert check_expected(infoseek, "demo", "answer/evidence_short@1", read_metrics(reference))
    data = tmp_path / "data"
    (data / "evqa").mkdir(parents=True)
    shutil.copy(world["evqa_csv"], data / "evqa" / "test.csv")
    shutil.copytree(world["evqa_images"], data / "gldv2" / "train")
    monkeypatch.setenv("RAGVQA_DATA", str(data))
    out = tmp_path / "run"
    result = cli(["bench", "evqa", "--pipeline", str(world["pipeline"]), "--out", str(out),
                  "--cache", str(tmp_path / "c"), "--check"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "OK retrieval.entity_recall.recall@5" in result.output
    assert len(read_records(out)) == 15


def test_compare_and_report_on_real_runs(world, reference, shared_engine, tmp_path):
    other = tmp_path / "other"
    pipe = Pipeline.load(world["pipeline"], ["retrieval.top_k=3"])
    BenchRunner(pipe, infoseek_spec(world), other, cache=tmp_path / "c", progress=False).run()
    result = cli(["compare", str(reference), str(other), "--json", "--resamples", "200"])
    assert result.exit_code == 0, result.output
    comparison = json.loads(result.stdout)
    metrics = {m["name"]: m for m in comparison["metrics"]}
    ref = read_metrics(reference)["retrieval"]["entity_recall"]
    assert metrics["entity_recall@1"]["a"] == pytest.approx(ref["recall@1"])
    # top-3 instead of top-5: B has no recall@5; at K = 3, both depths' figure, they agree
    assert metrics["entity_recall@5"]["b"] is None
    assert metrics["entity_recall@3"]["b"] == pytest.approx(metrics["entity_recall@3"]["a"])
    html = tmp_path / "r.html"
    result = cli(["report", str(reference), "--out", str(html)])
    assert result.exit_code == 0, result.output
    page = html.read_text()
    assert page.count("data-id='val_") == 30


def test_baselines_no_retrieval_and_oracle_entity(world, vllm_engine, tmp_path):
    """The oracle baseline reads the gold entity's own sections; no-retrieval reads none."""
    out = tmp_path / "run"
    pipe = pipeline(world, vllm_engine)
    metrics = BenchRunner(
        pipe, infoseek_spec(world, limit=6, baselines=True), out, cache=tmp_path / "c",
        progress=False,
    ).run()  # fmt: skip
    assert set(metrics["baselines"]) == {"no_retrieval", "oracle_entity"}
    assert "final_score" in metrics["baselines"]["oracle_entity"]
    gold = {r.data_id: r.gold_entities[0] for r in read_records(out)}
    qid_of_page = {}
    from ragvqa.kb.store import KBStore

    kb = KBStore(world["root"] / "kb")
    for p in kb.passages(range(len(kb))):
        qid_of_page[p.passage_id] = p.entity_id
    oracle = [json.loads(x)["record"] for x in (out / "work" / "oracle_entity.jsonl").open()]
    assert len(oracle) == 6
    for record in oracle:
        assert len(record["evidence"]) == 1  # reader.passages of the demo pipeline
        assert {qid_of_page[pid] for pid in record["evidence"]} == {gold[record["data_id"]]}
    plain = [json.loads(x)["record"] for x in (out / "work" / "no_retrieval.jsonl").open()]
    assert {r["template"] for r in plain} == {"answer/no_retrieval@1"}
    assert all(r["evidence"] == [] for r in plain)
