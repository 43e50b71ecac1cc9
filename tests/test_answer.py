"""`ragvqa answer` and `ragvqa demo` on the offline world, and answer's bad-input errors."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from ragvqa.cli.main import app
from ragvqa.pipeline import Pipeline


def first_question(world):
    q = json.loads(world["infoseek_questions"].read_text().splitlines()[0])
    image = world["infoseek_images"] / q["image_id"][5:7] / f"{q['image_id']}.jpg"
    return q, image


def test_answer_json_holds_the_whole_record(world, shared_engine):
    q, image = first_question(world)
    args = ["answer", "--image", str(image), "--question", q["question"],
            "--pipeline", str(world["pipeline"]), "--json", "--top-k", "3"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["question"] == q["question"] and record["image"] == str(image)
    assert len(record["retrieved"]) == 3
    assert [r["rank"] for r in record["retrieved"]] == [0, 1, 2]
    scores = [r["score"] for r in record["retrieved"]]
    assert scores == sorted(scores, reverse=True)
    assert len({r["page_id"] for r in record["retrieved"]}) == 3  # one passage per entity
    assert record["template"] == "answer/evidence_short@1"
    assert record["answer"] == Pipeline.load(world["pipeline"]).extract(record["raw_output"])
    # the rendered prompt quotes the evidence the reader saw (the demo reads 1 passage)
    user = next(m["text"] for m in record["prompt"] if m["role"] == "user")
    shown = record["retrieved"][: len(record["evidence"])]
    assert record["evidence"] == [r["passage_id"] for r in shown] and len(shown) >= 1
    assert all(r["title"] in user for r in shown)
    assert record["error"] is None and record["query_id"] == "q"
    assert q["question"] in user
    assert set(record["timings"]) == {"startup", "encode", "search", "generate"}


def test_answer_panel_and_prompt(world, shared_engine):
    q, image = first_question(world)
    args = ["answer", "--image", str(image), "--question", q["question"],
            "--pipeline", str(world["pipeline"]), "--show-prompt",
            "--prompt", "answer/evidence_short@1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ragvqa answer" in result.output and "answer/evidence_short@1" in result.output
    assert "random weights" in result.output  # the demo pipeline's notice
    assert q["question"] in result.output


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "image not found"),
        ("empty", "image file is empty"),
        ("truncated", "image is truncated or corrupt"),
        ("text", "not an image"),
        ("bomb", "image too large (decompression bomb)"),
    ],
)
def test_answer_refuses_bad_images_in_one_line(world, tmp_path, kind, message):
    _, good = first_question(world)
    path = tmp_path / "q.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:-200])
    elif kind == "text":
        path.write_text("hello")
    elif kind == "bomb":
        path = tmp_path / "big.png"
        Image.new("1", (20000, 20000)).save(path)
    args = ["answer", "--image", str(path), "--question", "What is it?",
            "--pipeline", str(world["pipeline"])]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output == f"error: {path}: {message}\n"


@pytest.mark.parametrize(
    ("question", "message"),
    [("   ", "the question is empty"), ("caf\udce9?", "the question is not valid UTF-8 text")],
)
def test_answer_refuses_bad_questions(world, question, message):
    _, image = first_question(world)
    args = ["answer", "--image", str(image), "--question", question,
            "--pipeline", str(world["pipeline"])]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output == f"error: {message}\n"


def test_answer_unknown_template_and_component(world):
    _, image = first_question(world)
    base = ["answer", "--image", str(image), "--question", "What?", "--pipeline",
            str(world["pipeline"])]  # fmt: skip
    result = CliRunner().invoke(app, [*base, "--prompt", "answer/evidence_shrt@1"])
    assert result.exit_code == 2 and "did you mean 'answer/evidence_short@1'" in result.output
    result = CliRunner().invoke(app, [*base, "--set", "reader.generator.type=vlm"])
    assert result.exit_code == 2 and "unknown generator 'vlm'" in result.output


def test_demo_runs_answer_and_both_benchmarks(world, shared_engine, tmp_path):
    folder = tmp_path / "demo"
    shutil.copytree(world["root"], folder)
    result = CliRunner().invoke(app, ["demo", str(folder)])
    assert result.exit_code == 0, result.output
    assert "answer: Which city is this tower in?" in result.output
    assert "answers are meaningless" in result.output
    for name, count in (("infoseek", 30), ("evqa", 15)):
        lines = (folder / "runs" / name / "predictions.jsonl").read_text().splitlines()
        assert len(lines) == count
        assert {"data_id", "prediction"} <= set(json.loads(lines[0]))
        metrics = json.loads((folder / "runs" / name / "metrics.json").read_text())
        assert metrics["counts"]["answered"] == count


def test_answer_refuses_an_index_built_for_another_encoder(world, tmp_path):
    from ragvqa.fixtures.models import tiny_retriever

    other = tiny_retriever(tmp_path / "other", seed=1)
    _, image = first_question(world)
    args = ["answer", "--image", str(image), "--question", "What?", "--pipeline",
            str(world["pipeline"]), "--set", f"encoder.model={other}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "the index was built with encoder" in result.output


@pytest.mark.engine  # a `ragvqa answer` process starts its own engine
def test_answer_json_on_stdout_is_clean_json_with_a_real_engine(world, tmp_path):
    """The console script end to end (its own vLLM engine): stdout holds only the JSON record,
    engine logs go to stderr."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    q, image = first_question(world)
    script = Path(sys.executable).parent / "ragvqa"
    proc = subprocess.run(
        [str(script), "answer", "--image", str(image), "--question", q["question"],
         "--pipeline", str(world["pipeline"]), "--json"],
        capture_output=True, text=True, timeout=300,
        env={**{k: v for k, v in os.environ.items() if k != "VLLM_LOGGING_STREAM"},
             "VLLM_LOGGING_LEVEL": "INFO"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert record["question"] == q["question"] and len(record["retrieved"]) == 5
    assert "INFO" in proc.stderr  # the engine did log, on stderr
