"""Benchmarks are plug-ins: a third one registered by the tests (one module, one YAML) runs
through `ragvqa bench` retrieval-only; nothing outside the plug-ins branches on a name."""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import infoseek_bench
from typer.testing import CliRunner

from ragvqa.benchmarks import benchmark_names
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
    args = infoseek_bench(world, "--retrieval-only", "--out", out, "--cache", tmp_path / "c",
                          "--set", NO_READER)  # fmt: skip
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
    assert result.output == (
        f"error: benchmark '{plugin}' reads no --qtypes file (its file roles: questions)\n"
    )
    result = CliRunner().invoke(app, ["bench", "infoseak"])
    assert result.exit_code == 2 and "did you mean 'infoseek'" in result.output


@pytest.mark.parametrize(
    "option, message",
    [
        ("qtype=q.jsonl", "benchmark 'infoseek' reads no 'qtype' file (its file roles: "
                          "questions, qtypes, withkb); did you mean 'qtypes'?"),
        ("qtypes", "--file expects ROLE=PATH, not 'qtypes'"),
        ("questions=b.jsonl", "the questions file is given twice (a.jsonl and b.jsonl)"),
    ],
)  # fmt: skip
def test_bench_file_roles_are_the_plugins_with_one_line_errors(option, message):
    for command in ("bench", "score"):
        args = [command, "infoseek", "--questions", "a.jsonl", "--file", option]
        if command == "score":
            args += ["--predictions", "p.jsonl"]
        result = CliRunner().invoke(app, args)
        assert (result.exit_code, result.output) == (2, f"error: {message}\n"), command


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


# Where a registered name may appear in a comparison, a loop, a match or a dict key outside the
# plug-ins: the registry (it maps the names), the fixtures that build benchmark data (the demo
# world writes InfoSeek and E-VQA files, so it knows their formats), and, by line:
ALLOWED = {
    # M2KR's own configurations of its copies of the two datasets (a loader of M2KR files,
    # keyed by the dataset each copies; no plug-in reads it)
    ("data/m2kr.py", "CONFIGS = "),
    ("data/m2kr.py", "IMAGE_DATASETS = "),
    # "evqa" here is a KB *format* (the E-VQA KB JSON), which `ragvqa kb build --format` names
    ("kb/readers.py", '"evqa": read_evqa'),
}
SKIPPED = ("benchmarks", "fixtures", "registry.py")  # first part of a path under ragvqa/


def _names_in(node: ast.AST, names: set[str]) -> list[ast.Constant]:
    """Constants equal to a benchmark name: `node` itself, or items of a literal collection."""
    if isinstance(node, ast.Constant) and node.value in names:
        return [node]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [c for e in node.elts for c in _names_in(e, names)]
    return []


def branches_on_names(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every benchmark name that decides something: compared (`==`, `!=`,
    `in` a literal), looped over, matched, a dict literal's key, or a subscript's key."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            hits = [c for side in (node.left, *node.comparators) for c in _names_in(side, names)]
        elif isinstance(node, ast.For | ast.comprehension):
            hits = _names_in(node.iter, names)
        elif isinstance(node, ast.match_case):
            hits = [c for n in ast.walk(node.pattern) for c in _names_in(n, names)]
        elif isinstance(node, ast.Dict):
            hits = [c for key in node.keys if key is not None for c in _names_in(key, names)]
        elif isinstance(node, ast.Subscript):
            hits = _names_in(node.slice, names)
        else:
            hits = []
        found += [(c.lineno, c.value) for c in hits]
    return sorted(set(found))


def test_the_guard_finds_each_kind_of_branch_on_a_name():
    source = (
        'if name == "infoseek": pass\n'
        'ok = name in ("x", "evqa")\n'
        'for n in ["wn-wiki"]: print(n)\n'
        'match name:\n    case "evqa": print(1)\n'
        'TABLE = {"infoseek": 1}\n'
        'v = metrics["evqa"]\n'
        'fine = load("infoseek_questions") + "evqa"\n'  # not a decision: left alone
    )
    names = {"infoseek", "evqa", "wn-wiki"}
    lines = [line for line, _ in branches_on_names(source, names)]
    assert lines == [1, 2, 3, 5, 6, 7]


def test_no_branch_on_a_benchmark_name_outside_the_plugins():
    names = set(benchmark_names())
    assert {"infoseek", "evqa", "wn-wiki"} <= names
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in SKIPPED:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for line, name in branches_on_names(path.read_text(encoding="utf-8"), names):
            allowed = any(
                str(relative) == file and text in lines[line - 1] for file, text in ALLOWED
            )
            if not allowed:
                found.append(f"{relative}:{line}: {name!r}")
    assert found == []


def test_score_refuses_a_retrieval_only_benchmark_in_one_line(plugin, tmp_path):
    args = ["score", plugin, "--predictions", str(tmp_path / "p.jsonl"),
            "--questions", str(tmp_path / "q.jsonl")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert (result.exit_code, result.output) == (
        2,
        f"error: benchmark '{plugin}' scores no answers (it is retrieval only)\n",
    )
