"""Benchmarks are plug-ins: a third one registered by the tests (one module, one YAML) runs
through `ragvqa bench` retrieval-only; nothing outside the plug-ins branches on a name."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragvqa.cli.main import app
from ragvqa.kb.store import KBStore
from ragvqa.registry import BENCHMARKS, Registry
from ragvqa.run.records import read_metrics, read_records

PACKAGE = Path(__file__).resolve().parents[1] / "ragvqa"
NAME = "m2kr-infoseek-passages"
NO_READER = "reader.generator.model=/nonexistent/reader"  # loading a reader would fail


@pytest.fixture(scope="module")
def plugin():
    if NAME not in BENCHMARKS:
        BENCHMARKS.register(NAME, "plugins.m2kr_passages:M2KRPassages")
    return NAME


def m2kr_layout(world, root: Path) -> None:
    """The demo world's InfoSeek questions as M2KR passage-retrieval rows under `root`: the
    same questions and images (flat), gold = every passage of the question's gold entity."""
    kb = KBStore(world["root"] / "kb")
    by_entity: dict[str, list[str]] = {}
    for p in kb.passages(range(len(kb))):
        by_entity.setdefault(p.entity_id, []).append(p.passage_id)
    gold = {}
    for line in world["infoseek_withkb"].read_text().splitlines():
        row = json.loads(line)
        gold[row["data_id"]] = row["entity_id"]
    (root / "m2kr" / "images").mkdir(parents=True)
    rows = []
    for line in world["infoseek_questions"].read_text().splitlines():
        q = json.loads(line)
        image = f"{q['image_id']}.jpg"
        shutil.copy(world["infoseek_images"] / q["image_id"][5:7] / image, root / "m2kr" / "images")
        rows.append({"question_id": q["data_id"], "question": q["question"], "img_path": image,
                     "pos_item_ids": by_entity[gold[q["data_id"]]]})  # fmt: skip
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (root / "m2kr" / "infoseek_passages.jsonl").write_text(text)


def test_a_third_benchmark_runs_retrieval_only_from_its_defaults(plugin, world, tmp_path):
    data = tmp_path / "data"
    m2kr_layout(world, data)
    out = tmp_path / "run"
    args = ["bench", plugin, "--pipeline", str(world["pipeline"]), "--out", str(out),
            "--cache", str(tmp_path / "c"), "--set", NO_READER, "--check"]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"RAGVQA_DATA": str(data)})
    assert result.exit_code == 0, result.output
    assert "OK retrieval.entity_recall.recall@1" in result.output
    metrics = read_metrics(out)
    assert metrics["retrieval_only"] is True and metrics["official"] is None
    assert metrics["template"] is None and "generate" not in metrics["timings"]
    # the same questions as the demo InfoSeek run: passage recall = its entity recall
    recall = metrics["retrieval"]["entity_recall"]
    assert (round(recall["recall@1"], 2), round(recall["recall@5"], 2)) == (6.67, 36.67)
    assert recall["judged"] == 30
    records = read_records(out)
    assert len(records) == 30 and all(r.dataset == plugin for r in records)
    assert all(r.prediction == "" and r.raw_output is None and len(r.retrieved) == 5
               for r in records)  # fmt: skip
    assert not (out / "work" / "answers.jsonl").exists()


def test_retrieval_only_on_infoseek_loads_no_reader(world, tmp_path):
    out = tmp_path / "run"
    args = ["bench", "infoseek", "--retrieval-only", "--pipeline", str(world["pipeline"]),
            "--out", str(out), "--cache", str(tmp_path / "c"), "--set", NO_READER,
            "--questions", str(world["infoseek_questions"]), "--qtypes",
            str(world["infoseek_qtypes"]), "--withkb", str(world["infoseek_withkb"]),
            "--images", str(world["infoseek_images"])]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = read_metrics(out)
    assert metrics["official"] is None and metrics["baselines"] == {}
    recall = metrics["retrieval"]["entity_recall"]
    assert (round(recall["recall@1"], 2), round(recall["recall@5"], 2)) == (6.67, 36.67)


def test_a_benchmark_reads_only_its_own_files(plugin, world, tmp_path):
    args = [
        "bench",
        plugin,
        "--pipeline",
        str(world["pipeline"]),
        "--questions",
        str(world["infoseek_questions"]),
        "--qtypes",
        str(world["infoseek_qtypes"]),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output == f"error: benchmark '{plugin}' reads no --qtypes file\n"
    result = CliRunner().invoke(app, ["bench", "infoseak"])
    assert result.exit_code == 2 and "did you mean 'infoseek'" in result.output


def test_installed_packages_add_benchmarks_through_entry_points(tmp_path, monkeypatch):
    dist = tmp_path / "ragvqa_extra-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ragvqa-extra\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[ragvqa.test_benchmarks]\nextra = plugins.m2kr_passages:M2KRPassages\n"
    )
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    registry = Registry("benchmark", {"infoseek": "ragvqa.benchmarks.infoseek:InfoSeek"},
                        group="ragvqa.test_benchmarks")  # fmt: skip
    assert registry.names() == ["extra", "infoseek"]
    assert registry.get("extra").name == NAME


def test_no_branch_on_a_benchmark_name_outside_the_plugins():
    pattern = re.compile(r"""==\s*["'](infoseek|evqa)["']""")
    found = [
        f"{path.relative_to(PACKAGE)}:{i}"
        for path in PACKAGE.rglob("*.py")
        if "benchmarks" not in path.relative_to(PACKAGE).parts
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
