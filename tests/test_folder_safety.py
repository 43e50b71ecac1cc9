"""Folders a command writes (issue 22): the demo world is written only into a folder that is
missing, empty or made by ragvqa (its `.ragvqa-world` marker); every command that writes a
folder holds its lock (`ragvqa.run.lock`), so a second process is refused naming the holder;
a re-run of a finished bench keeps the stage timings its run recorded when it computed them.

The lock cases hold the lock from this process with the same API and run the real CLI in a
subprocess, which is refused before it loads any model; the bench runs are retrieval-only and
in-process (the world's tiny retriever, no reader, no engine).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import infoseek_bench
from typer.testing import CliRunner

from ragvqa.cli.main import app
from ragvqa.errors import UserError
from ragvqa.run.lock import LOCK, FolderLock

HERE = Path(__file__).resolve().parent
WORLD_MARKER = ".ragvqa-world"  # ragvqa.fixtures.claim.WORLD_MARKER


def ragvqa(*args, module: str = "ragvqa.cli", **kw):
    """`python -m MODULE ARGS` in a subprocess (the checkout first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", module, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, **kw)


def snapshot(folder: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every entry under `folder`: its bytes (None for a folder) and its mode."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mode)
        for p in sorted(folder.rglob("*"))
    }


def refused(proc, *fragments: str) -> str:
    """Exit 2, no traceback, nothing on stdout, and one stderr line, `error: ...`, holding
    every fragment. Returns it."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def holder() -> str:
    """The start of what a refused process says of this test process holding a lock."""
    return f"in use by another ragvqa process (pid {os.getpid()} on {socket.gethostname()}, since "


# --- 1. the demo world is written only into a folder ragvqa made ----------------------------


def users_folder(folder: Path) -> Path:
    """A folder of the user's own: a kb.json, an E-VQA CSV and a pipeline, as the world's."""
    (folder / "evqa").mkdir(parents=True)
    (folder / "kb.json").write_text('{"mine": "my knowledge base"}\n')
    (folder / "evqa" / "test.csv").write_text("question,answer\nmine?,yes\n")
    (folder / "pipeline.yaml").write_text("name: mine\n")
    return folder


def test_the_demo_and_the_fixtures_never_write_into_a_users_folder(tmp_path):
    """`python -m ragvqa.fixtures DIR` and `ragvqa demo DIR` overwrote kb.json, evqa/test.csv
    and pipeline.yaml (or wrote benchmarks.yaml beside them): now refused in one line, exit
    2, every file byte-identical, nothing added."""
    mine = users_folder(tmp_path / "mine")
    only_kb = tmp_path / "only-kb"  # no pipeline.yaml: the demo used to build a world over it
    only_kb.mkdir()
    (only_kb / "kb.json").write_text('{"mine": 1}\n')
    before = snapshot(tmp_path)
    for folder in (mine, only_kb):
        problem = f"error: {folder}: is not empty and ragvqa did not make it (no {WORLD_MARKER}"
        line = refused(ragvqa(folder, module="ragvqa.fixtures"), problem)
        assert line.endswith("refusing to write into it; use a new or empty folder")
        refused(ragvqa("demo", folder, "--no-bench"), problem, "kb.json")
        refused(ragvqa("demo", "--real", folder, "--no-bench"), problem)
    assert snapshot(tmp_path) == before
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    refused(ragvqa(a_file, module="ragvqa.fixtures"), f"{a_file}: is a file, expected a folder")
    assert a_file.read_text() == "mine\n"


def test_a_missing_or_empty_folder_is_claimed_with_the_marker_first(tmp_path):
    """A missing or empty folder (or one holding only a lock file a crash left) is claimed:
    the marker, with the ragvqa version, is its first file; a marked folder is ours again."""
    from ragvqa import __version__
    from ragvqa.fixtures import claim
    from ragvqa.fixtures.claim import check_world_folder, world_folder

    assert claim.WORLD_MARKER == WORLD_MARKER
    empty, crashed = tmp_path / "empty", tmp_path / "crashed"
    empty.mkdir()
    crashed.mkdir()
    (crashed / LOCK).write_text('{"pid": 1}\n')  # a crash's lock file is only a file
    for folder in (tmp_path / "new" / "world", empty, crashed):
        with world_folder(folder, made_by="test") as root:
            assert sorted(p.name for p in root.iterdir()) == sorted([LOCK, WORLD_MARKER])
            marker = json.loads((root / WORLD_MARKER).read_text())
            assert marker["made_by"] == "test" and marker["ragvqa"] == __version__
            (root / "kb.json").write_text("{}")  # what the world writes next
        assert not (folder / LOCK).exists()
        check_world_folder(folder)  # marked: written into again
        with world_folder(folder):
            pass
    (empty / WORLD_MARKER).unlink()
    with pytest.raises(UserError, match="is not empty and ragvqa did not make it"):
        check_world_folder(empty)


def test_a_second_demo_or_build_on_a_world_in_use_is_refused(world, tmp_path):
    """A world another ragvqa process writes is refused naming it, nothing changed."""
    copy = tmp_path / "w"
    shutil.copytree(world["root"], copy, ignore=shutil.ignore_patterns("runs", "cache"))
    assert (copy / WORLD_MARKER).is_file()  # build_world marks the worlds it makes
    with FolderLock(copy):
        before = snapshot(copy)
        proc = ragvqa(copy, module="ragvqa.fixtures")
        refused(proc, f"error: {copy}: {holder()}", "wait for it to end, or use another folder")
        assert snapshot(copy) == before


def test_the_demo_reuses_a_world_it_made(world, tmp_path, monkeypatch):
    """Re-running `ragvqa demo DIR` on a world it built keeps working: the world is used as it
    is (the answer is stubbed here: no engine), only benchmarks.yaml is added."""
    from ragvqa.pipeline import Pipeline

    copy = tmp_path / "w"
    shutil.copytree(world["root"], copy, ignore=shutil.ignore_patterns("runs", "cache"))
    (copy / "benchmarks.yaml").unlink(missing_ok=True)
    before = snapshot(copy)
    stub = SimpleNamespace(passages=(), text="x", to_json=lambda: {})
    monkeypatch.setattr(Pipeline, "answer", lambda self, image, question: stub)
    result = CliRunner().invoke(app, ["demo", str(copy), "--no-bench"])
    assert result.exit_code == 0, result.output
    assert f"using the demo world in {copy}" in result.output
    after = snapshot(copy)
    assert set(after) - set(before) == {"benchmarks.yaml"}
    assert {k: after[k] for k in before} == before and not (copy / LOCK).exists()


# --- 2. every command that writes a folder holds its lock -----------------------------------


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    """One retrieval-only run of 3 questions into a fresh stage cache, then the same command
    again (everything from the cache): the metrics and records after each."""
    root = tmp_path_factory.mktemp("runs")
    args = infoseek_bench(world, "--retrieval-only", "--limit", "3",
                          "--cache", root / "cache", "--out", root / "run")  # fmt: skip
    seen = []
    for _ in range(2):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        metrics = json.loads((root / "run" / "metrics.json").read_text())
        rows = (root / "run" / "predictions.jsonl").read_text().splitlines()
        seen.append((metrics, [json.loads(r)["timings"] for r in rows], result.output))
    return SimpleNamespace(root=root, args=args, run=root / "run", seen=seen)


def lock_case(name: str, world: dict, runs: SimpleNamespace, tmp: Path) -> tuple[Path, list]:
    """The folder a command writes and the command, for each command that writes a folder."""
    root = world["root"]
    if name == "kb build":
        out = tmp / "kb"
        return out, ["kb", "build", "--format", "evqa", "--input", root / "kb.json",
                     "--images-dir", root / "kb_images", "--out", out, "--no-progress"]  # fmt: skip
    if name == "index build":
        out = tmp / "index"
        return out, ["index", "build", "--kb", root / "kb", "--encoder",
                     root / "models" / "retriever" / "model", "--out", out, "--device", "cpu",
                     "--no-progress"]  # fmt: skip
    if name == "train retriever":
        out = tmp / "train"
        return out, ["train", "retriever", "--train", tmp / "pairs.jsonl", "--out", out,
                     "--preset", "ret2-vit-b32", "--towers", "random", "--steps", "1",
                     "--no-progress"]  # fmt: skip
    if name == "data fetch":  # a manual artefact: nothing to download
        entry = {"name": "blob", "description": "d", "kind": "manual", "license": "t",
                 "benchmarks": ["infoseek"], "dest": "blob.txt",
                 "instructions": "by hand"}  # fmt: skip
        (tmp / "cat.yaml").write_text(yaml.safe_dump({"version": 1, "artefacts": [entry]}))
        out = tmp / "data"
        return out, ["data", "fetch", "blob", "--to", out, "--catalogue", tmp / "cat.yaml",
                     "--no-progress"]  # fmt: skip
    run = tmp / "run"
    shutil.copytree(runs.run, run)
    if name == "report":  # RUN/report.html: the run folder
        return run, ["report", run]
    out = tmp / "pages"  # report --out pages/r.html: its folder
    return out, ["report", run, "--out", out / "r.html"]


COMMANDS = ["kb build", "index build", "train retriever", "data fetch", "report", "report --out"]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_is_refused_while_another_process_holds_its_folder(name, world, runs, tmp_path):
    """Two `kb build` on one --out both exited 0 and both reported a finished KB, though the
    folder held only one of them; `index build`, `train retriever`, `data fetch` (the data
    root) and `report` (the page's folder) wrote on the same way. Now the second process is
    refused at once, in one line naming the folder and the holder, exit 2, nothing changed;
    once the holder lets go, nothing of the lock is left."""
    folder, args = lock_case(name, world, runs, tmp_path)
    folder.mkdir(exist_ok=True)
    hint = "--to" if name == "data fetch" else "--out"
    with FolderLock(folder):
        before = snapshot(folder)
        proc = ragvqa(*args)
        refused(proc, f"error: {folder}: {holder()}", f"wait for it to end, or use another {hint}")
        assert snapshot(folder) == before
    assert not (folder / LOCK).exists()


def test_a_folder_made_for_the_lock_is_removed_when_the_command_fails(world, tmp_path):
    """`locked_folder` creates a missing --out (and its parents) to lock it; a command that
    fails before writing anything leaves none of them behind (a KB of the wrong format, an
    index of an unknown type: as before the lock)."""
    from ragvqa.run.lock import locked_folder

    missing = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), locked_folder(missing):
        assert (missing / LOCK).is_file()
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    root = world["root"]
    proc = ragvqa("kb", "build", "--format", "wiki6m", "--input", root / "kb.json",
                  "--out", tmp_path / "new" / "kb", "--no-progress")  # fmt: skip
    refused(proc, "no passages read as --format wiki6m")
    proc = ragvqa("index", "build", "--kb", root / "kb", "--encoder",
                  root / "models" / "retriever" / "model", "--type", "bogus",
                  "--out", tmp_path / "new" / "index", "--no-progress")  # fmt: skip
    assert proc.returncode == 2 and "bogus" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with (
        pytest.raises(UserError, match="is a file, expected a folder"),
        locked_folder(tmp_path / "f"),
    ):
        pass


def test_report_is_written_once_the_folder_is_free(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs.run, run)
    proc = ragvqa("report", run)
    assert proc.returncode == 0, proc.stderr
    assert (run / "report.html").is_file() and not (run / LOCK).exists()


# --- 3. a re-run of a finished bench keeps the timings it measured --------------------------


def test_rerunning_a_finished_bench_keeps_its_measured_stage_timings(runs):
    """The second run computed nothing: its encode and search are marked cached and keep the
    seconds the first run measured (in metrics.json and in each record), not 0."""
    (first, first_rows, _), (second, second_rows, output) = runs.seen
    for stage in ("encode", "search"):
        assert first["timings"][stage]["cached"] is False
        assert second["timings"][stage] == {**first["timings"][stage], "cached": True}
    assert first["timings"]["encode"]["seconds"] > 0
    assert second["timings"]["total"]["seconds"] == first["timings"]["total"]["seconds"]
    assert second_rows == first_rows
    assert "(cached)" in output


def test_a_rerun_keeps_what_the_run_recorded_not_zero(runs, tmp_path):
    """Recorded seconds (set here to values no run measures) survive a third, cached run."""
    run = tmp_path / "run"
    shutil.copytree(runs.run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["timings"]["encode"]["seconds"], metrics["timings"]["search"]["seconds"] = 1.25, 0.5
    (run / "metrics.json").write_text(json.dumps(metrics))
    rows = [json.loads(r) for r in (run / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        row["timings"]["encode"] = 0.25
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [*runs.args[:-1], str(run)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    timings = json.loads((run / "metrics.json").read_text())["timings"]
    assert timings["encode"] == {"seconds": 1.25, "cached": True}
    assert timings["search"] == {"seconds": 0.5, "cached": True}
    rows = [json.loads(r) for r in (run / "predictions.jsonl").read_text().splitlines()]
    assert {row["timings"]["encode"] for row in rows} == {0.25}
    # with --no-cache the stages are computed: measured again, not kept
    result = CliRunner().invoke(app, [*args, "--no-cache"])
    assert result.exit_code == 0, result.output
    timings = json.loads((run / "metrics.json").read_text())["timings"]
    assert timings["encode"]["cached"] is False and timings["encode"]["seconds"] != 1.25
