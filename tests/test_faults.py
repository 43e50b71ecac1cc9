"""Faults of issue 14 (runs, outputs and messages), each driven through the real CLI in a
subprocess: the exit status, the one-line message, and that every file there before is
byte-identical afterwards (contents and modes).

The demo world's reader runs here through transformers (not vLLM, which only the kill test
starts); a run of 4 questions, finished once per module, is copied by the tests that need one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

HERE = Path(__file__).resolve().parent
ESC = "\x1b"


def ragvqa(*args, driver: str | None = None, umask: int = 0o022, **kw):
    """`ragvqa ARGS` in a subprocess; with `driver`, under tests/fault_driver.py (a full disk
    simulated at the write call of files whose name contains `driver`)."""
    head = [str(HERE / "fault_driver.py"), driver] if driver else ["-m", "ragvqa.cli"]
    cmd = [sys.executable, *head, *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "COLUMNS": "200"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, umask=umask, **kw)


def snapshot(folder: Path) -> dict[str, tuple[bytes | str | None, int]]:
    """Every entry under `folder`: its bytes (a link: its target) and its mode."""
    out = {}
    for path in sorted(folder.rglob("*")):
        mode = path.lstat().st_mode
        if path.is_symlink():
            content: bytes | str | None = os.readlink(path)
        else:
            content = path.read_bytes() if path.is_file() else None
        out[str(path.relative_to(folder))] = (content, mode)
    return out


def refused(proc, *fragments: str, alone: bool = True) -> str:
    """Exit 2, no traceback, one `error:` line holding every fragment (the last line of stderr;
    `alone`: the only one). Returns the line."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.rstrip("\n").split("\n")
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]
    assert not alone or len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def records(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "timings"} for r in rows]


@pytest.fixture(scope="module")
def setup(world, tmp_path_factory):
    """The world's pipeline with a transformers reader, a questions file of our own, and one
    finished run of 4 questions (reader batches of 2: two journal appends), run with umask
    027."""
    root = tmp_path_factory.mktemp("faults")
    config = yaml.safe_load(world["pipeline"].read_text())
    base = world["root"]
    config["encoder"]["model"] = str(base / config["encoder"]["model"])
    config["kb"]["path"] = str(base / config["kb"]["path"])
    config["index"]["path"] = str(base / config["index"]["path"])
    reader = str(base / config["reader"]["generator"]["model"])
    config["reader"]["generator"] = {"type": "transformers", "model": reader, "device": "cpu"}
    pipeline = root / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(config, sort_keys=False))
    questions = root / "questions.jsonl"
    shutil.copy(world["infoseek_questions"], questions)
    args = ["bench", "infoseek", "--pipeline", pipeline, "--questions", questions,
            "--qtypes", world["infoseek_qtypes"], "--images", world["infoseek_images"],
            "--limit", "4", "--set", "reader.batch_size=2"]  # fmt: skip
    run, cache = root / "run", root / "cache"
    proc = ragvqa(*args, "--out", run, "--cache", cache, umask=0o027)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = [p for folder in (run, cache) for p in folder.rglob("*") if p.is_file()]
    modes = {p.name: p.stat().st_mode & 0o777 for p in written}  # before any test touches them
    return SimpleNamespace(
        root=root, args=args, run=run, cache=cache, questions=questions, modes=modes
    )


def a_copy(setup, tmp_path, *, cache: bool = False) -> tuple[Path, Path]:
    """A copy of the finished run (and of its stage cache, or the shared one)."""
    run = tmp_path / "run"
    shutil.copytree(setup.run, run, symlinks=True)
    if not cache:
        return run, setup.cache
    shutil.copytree(setup.cache, tmp_path / "cache")
    return run, tmp_path / "cache"


# --- an output that is an input ------------------------------------------------------------


def test_score_refuses_an_output_that_is_one_of_its_inputs(world, tmp_path):
    rows = [json.loads(x) for x in world["infoseek_questions"].read_text().splitlines()]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"data_id": r["data_id"], "prediction": "x"}) + "\n"
                             for r in rows))  # fmt: skip
    (tmp_path / "link.jsonl").symlink_to(preds)
    os.link(preds, tmp_path / "hard.jsonl")
    base = ["score", "infoseek", "--predictions", preds, "--questions",
            world["infoseek_questions"], "--qtypes", world["infoseek_qtypes"]]  # fmt: skip
    before = snapshot(tmp_path)
    for name in ("preds.jsonl", "link.jsonl", "hard.jsonl"):
        out = tmp_path / name
        refused(ragvqa(*base, "--output", out), f"{out}: --output is the same file as "
                "--predictions; refusing to overwrite an input")  # fmt: skip
        refused(ragvqa(*base, "--per-example", out), "--per-example is the same file as")
    qtypes = world["infoseek_qtypes"]
    refused(ragvqa(*base, "--output", qtypes), "--output is the same file as --qtypes")
    both = tmp_path / "m.json"
    refused(ragvqa(*base, "--output", both, "--per-example", both),
            "--output and --per-example are the same file")  # fmt: skip
    assert snapshot(tmp_path) == before and not both.exists()


def test_report_refuses_to_write_over_the_runs_own_files(setup, tmp_path):
    run, _ = a_copy(setup, tmp_path)
    before = snapshot(run)
    for name in ("predictions.jsonl", "metrics.json", "config.yaml"):
        refused(ragvqa("report", run, "--out", run / name),
                f"--out is the same file as RUN/{name}")  # fmt: skip
    refused(ragvqa("report", run, "--out", run), "--out is the same folder as RUN")
    assert snapshot(run) == before


def test_kb_and_index_build_refuse_an_output_folder_holding_their_input(world, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(world["root"] / "kb.json", folder / "kb.json")  # an E-VQA KB is often kb.json
    before = snapshot(folder)
    proc = ragvqa("kb", "build", "--format", "evqa", "--input", folder / "kb.json",
                  "--out", folder)  # fmt: skip
    refused(proc, "--out/kb.json is the same file as --input; refusing to overwrite an input")
    assert snapshot(folder) == before
    kb = world["root"] / "kb"
    before = snapshot(kb)
    proc = ragvqa("index", "build", "--kb", kb, "--encoder",
                  world["root"] / "models/retriever/model", "--out", kb)  # fmt: skip
    refused(proc, f"{kb}: --out is the same folder as --kb")
    assert snapshot(kb) == before


def test_bench_out_that_is_a_file_or_an_input_folder(setup, world, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("my notes\n")
    proc = ragvqa(*setup.args, "--out", target, "--cache", setup.cache)
    refused(proc, f"{target}: --out is a file, expected a folder")
    assert target.read_text() == "my notes\n"
    images = world["infoseek_images"]
    proc = ragvqa(*setup.args, "--out", images, "--cache", setup.cache)
    refused(proc, "--out is the same folder as the oven image folder")


# --- an existing run folder --------------------------------------------------------------


def test_another_configuration_is_refused_and_overwrite_says_so(setup, tmp_path):
    run, cache = a_copy(setup, tmp_path)
    before = snapshot(run)
    proc = ragvqa(*setup.args, "--out", run, "--cache", cache,
                  "--set", "retrieval.top_k=3", "--limit", "3")  # fmt: skip
    refused(proc, f"{run}: holds a run of another configuration (pipeline.retrieval.top_k: "
            "5 -> 3; benchmark.limit: 4 -> 3): use another --out, or --overwrite")  # fmt: skip
    assert snapshot(run) == before
    # the same configuration, but its questions file is now malformed: nothing is written
    good = setup.questions.read_bytes()
    try:
        setup.questions.write_bytes(good.split(b"\n")[0] + b'\n{"data_id": \n')
        proc = ragvqa(*setup.args, "--out", run, "--cache", cache)
    finally:
        setup.questions.write_bytes(good)
    refused(proc, f"{setup.questions}:2: malformed JSON", alone=False)
    assert snapshot(run) == before
    # --overwrite replaces it, and says so
    proc = ragvqa(*setup.args, "--out", run, "--cache", cache, "--retrieval-only", "--overwrite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (f"note: --overwrite: {run} held another run (benchmark.retrieval_only: false -> "
            "true); its results are replaced") in proc.stderr  # fmt: skip
    assert "retrieval_only: true" in (run / "config.yaml").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["retrieval_only"] is True and metrics["official"] is None


def test_a_folder_that_is_not_a_run_is_not_written_into(setup, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "predictions.jsonl").write_text('{"data_id": "mine", "prediction": "kept"}\n')
    before = snapshot(folder)
    proc = ragvqa(*setup.args, "--out", folder, "--cache", setup.cache)
    refused(proc, "holds predictions.jsonl but no config.yaml: not a run of ragvqa bench")
    assert snapshot(folder) == before


def test_a_second_bench_on_the_same_folder_is_refused_and_a_crash_frees_it(setup, tmp_path):
    run, _ = a_copy(setup, tmp_path)
    lock = run / ".ragvqa.lock"
    # A: an empty stage cache, so that it has to load the encoder: it holds the lock a while
    first = subprocess.Popen(
        [sys.executable, "-m", "ragvqa.cli", *map(str, setup.args), "--out", str(run),
         "--cache", str(tmp_path / "empty")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(lock.read_text())["pid"] == first.pid:
                    break
            assert first.poll() is None, "the first run ended before it was caught"
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGSTOP)  # frozen while it holds the lock
        before = snapshot(run)
        proc = ragvqa(*setup.args, "--out", run, "--cache", setup.cache)
        refused(proc, f"{run}: in use by another ragvqa process (pid {first.pid} on "
                f"{socket.gethostname()}, since ")  # fmt: skip
        assert snapshot(run) == before
    finally:
        first.kill()  # a crash of the holder (SIGKILL works on a stopped process)
        first.wait()
    # the kernel released its lock: the same request resumes (journal complete, cache warm)
    proc = ragvqa(*setup.args, "--out", run, "--cache", setup.cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert records(run) == records(setup.run) and not lock.exists()


# --- messages and terminals --------------------------------------------------------------


def test_paths_with_markup_or_control_characters_are_shown_as_they_are(world, tmp_path):
    base = ["score", "infoseek", "--questions", world["infoseek_questions"],
            "--qtypes", world["infoseek_qtypes"], "--predictions"]  # fmt: skip
    for name, shown in (
        ("x[bold red]y.jsonl", "x[bold red]y.jsonl"),
        ("a[/]b.jsonl", "a[/]b.jsonl"),  # rich used to crash on it
        (f"a{ESC}[31mb\nc\u202ed.jsonl", "a\\x1b[31mb\\nc\\u202ed.jsonl"),
    ):
        line = refused(ragvqa(*base, tmp_path / name), "file not found")
        assert line == f"error: {tmp_path / shown}: file not found"


def test_control_characters_in_questions_are_escaped_on_screen_and_kept_in_files(setup, tmp_path):
    """compare's table of flipped questions shows them escaped; its --json and the HTML report
    keep them exact."""
    question = f"Which city?{ESC}[2J{ESC}[31m\a [bold]x[/]"
    rows = [json.loads(x) for x in (setup.run / "predictions.jsonl").read_text().splitlines()]
    runs = {}
    for name, score in (("a", 0), ("b", 1)):
        runs[name] = tmp_path / name
        shutil.copytree(setup.run, runs[name])
        rows[0] |= {"question": question, "score": score, "status": "ok",
                    "prediction": f"{name}{ESC}]0;title\a"}  # fmt: skip
        (runs[name] / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = ragvqa("compare", runs["a"], runs["b"], "--json", "--resamples", "50")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ESC not in proc.stderr and "\a" not in proc.stderr
    assert "Which city?\\x1b[2J\\x1b[31m\\x07 [bold]x[/]" in proc.stderr
    assert "b\\x1b]0;title\\x07" in proc.stderr
    fixed = json.loads(proc.stdout)["fixed"]
    assert [f["question"] for f in fixed] == [question]
    html = tmp_path / "r.html"
    proc = ragvqa("report", runs["b"], "--out", html)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Which city?{ESC}[2J{ESC}[31m\a [bold]x[/]" in html.read_text()


# --- files -------------------------------------------------------------------------------


def test_a_full_disk_while_scoring_keeps_the_old_output(world, setup, tmp_path):
    """ENOSPC is simulated at the write call (tests/fault_driver.py): half written, then the
    error, as write(2) does when the disk fills up."""
    out = tmp_path / "metrics.json"
    out.write_text('{"old": true}\n')
    preds = tmp_path / "preds.jsonl"
    preds.write_text((setup.run / "predictions.jsonl").read_text())
    before = snapshot(tmp_path)
    proc = ragvqa("score", "infoseek", "--predictions", preds, "--questions",
                  world["infoseek_questions"], "--qtypes", world["infoseek_qtypes"],
                  "--output", out, driver="metrics.json")  # fmt: skip
    refused(proc, f"{out}: cannot write (No space left on device)")
    assert snapshot(tmp_path) == before  # no temporary file left either


@pytest.mark.engine  # `ragvqa bench` processes load the models
def test_a_full_disk_while_benching_then_a_torn_journal_line(setup, tmp_path):
    """ENOSPC simulated at the write call (tests/fault_driver.py). Writing predictions.jsonl:
    the run folder is left as it was. Appending to the generation journal: half a line stays
    there (a torn line); the next run drops it, puts its record on a line of its own and ends
    with the answers of the uninterrupted run."""
    run, cache = a_copy(setup, tmp_path)
    before = snapshot(run)
    proc = ragvqa(*setup.args, "--out", run, "--cache", cache, driver="predictions.jsonl")
    refused(proc, f"{run / 'predictions.jsonl'}: cannot write (No space left on device)")
    assert snapshot(run) == before
    journal = run / "work" / "answers.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4  # two batches of two
    journal.write_bytes(b"".join(lines[:2]))  # the second batch is to be generated again
    proc = ragvqa(*setup.args, "--out", run, "--cache", cache, driver="answers.jsonl")
    refused(proc, f"{journal}: cannot write (No space left on device)", alone=False)
    torn = journal.read_bytes()
    assert torn.startswith(b"".join(lines[:2])) and not torn.endswith(b"\n")
    assert len(torn) > len(b"".join(lines[:2]))
    assert {k: v for k, v in snapshot(run).items() if k != "work/answers.jsonl"} == {
        k: v for k, v in before.items() if k != "work/answers.jsonl"
    }
    proc = ragvqa(*setup.args, "--out", run, "--cache", cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    whole = torn[: torn.rfind(b"\n") + 1]  # the complete lines (one of batch 2's, maybe)
    mended = journal.read_bytes()
    assert mended.startswith(whole)
    entries = [json.loads(line) for line in mended.splitlines()]  # every line is whole
    assert mended.endswith(b"\n") and all(e["record"]["data_id"] for e in entries)
    # batch 2 generated again (the same batches as before), its answers those of the first run
    assert {e["record"]["data_id"]: e["record"]["text"] for e in entries} == {
        json.loads(x)["record"]["data_id"]: json.loads(x)["record"]["text"] for x in lines
    }
    assert records(run) == records(setup.run)


def test_a_truncated_stage_cache_is_computed_again(setup, tmp_path):
    run, cache = a_copy(setup, tmp_path, cache=True)
    stages = cache / "stages"
    (npz,) = stages.glob("encode-*.npz")
    (search,) = stages.glob("search-*.jsonl")
    whole = np.load(npz)["vectors"]
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    search.write_bytes(search.read_bytes()[:-40])
    proc = ragvqa(*setup.args, "--out", run, "--cache", cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "error" not in proc.stderr.lower() and "Traceback" not in proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert not metrics["timings"]["encode"]["cached"]
    assert not metrics["timings"]["search"]["cached"]
    assert np.array_equal(np.load(npz)["vectors"], whole)  # written anew, whole
    assert search.read_text().endswith("\n") and len(search.read_text().splitlines()) == 4
    assert records(run) == records(setup.run)


def test_outputs_get_the_users_umask(setup, world, tmp_path):
    """The finished run was made under umask 027 (its files and its stage cache's); a score
    under umask 002."""
    assert set(setup.modes) >= {"config.yaml", "environment.json", "metrics.json",
                                "predictions.jsonl", "run.trec", "answers.jsonl"}  # fmt: skip
    assert any(name.endswith(".npz") for name in setup.modes)
    assert {oct(mode) for mode in setup.modes.values()} == {oct(0o640)}
    out = tmp_path / "m.json"
    proc = ragvqa("score", "infoseek", "--predictions", setup.run / "predictions.jsonl",
                  "--questions", world["infoseek_questions"], "--qtypes",
                  world["infoseek_qtypes"], "--output", out, umask=0o002)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.stat().st_mode & 0o777 == 0o664


# --- the vLLM engine process ---------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        kids = tree.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper holds no memory)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.engine
def test_kill_9_of_bench_takes_the_vllm_engine_process_with_it(world, tmp_path):
    """Run under `flock /work/scratch/engine.lock` (one vLLM engine at a time)."""
    out = tmp_path / "run"
    args = ["bench", "infoseek", "--pipeline", world["pipeline"], "--out", out,
            "--questions", world["infoseek_questions"], "--qtypes", world["infoseek_qtypes"],
            "--images", world["infoseek_images"], "--cache", tmp_path / "cache",
            "--set", "reader.batch_size=1"]  # fmt: skip
    log = (tmp_path / "bench.log").open("w")
    bench = subprocess.Popen(
        [sys.executable, "-m", "ragvqa.cli", *map(str, args)], stdout=log, stderr=log,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)}, start_new_session=True,
    )  # fmt: skip
    journal = out / "work" / "answers.jsonl"
    try:
        deadline = time.monotonic() + 400
        while not (journal.is_file() and journal.stat().st_size > 0):
            assert bench.poll() is None, (tmp_path / "bench.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the engine never answered"
            time.sleep(0.05)
        family = _descendants(bench.pid)  # the engine is up: it has answered a batch
        names = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in family if _alive(pid)]
        assert any(b"EngineCore" in name for name in names), names
        bench.kill()
        bench.wait()
        deadline = time.monotonic() + 10
        while [pid for pid in family if _alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in family if _alive(pid)] == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bench.pid, signal.SIGKILL)  # whatever a failure left behind
        bench.wait()
        log.close()
