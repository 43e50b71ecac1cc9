"""A cold `ragvqa answer`: the reader's engine starts in a background thread while the main
thread retrieves, the `startup` block says when each component loaded, errors of either thread
read as before, and a KB opens only the shards a query reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from ragvqa.errors import UserError
from ragvqa.pipeline import Pipeline
from ragvqa.startup import Background, StartupLog, process_age, since_start

QUESTION = "In which city is this tower?"


def first_image(world) -> Path:
    return sorted(world["infoseek_images"].rglob("*.jpg"))[0]


def run_answer(world, *extra: str, env: dict[str, str] | None = None, timeout: int = 300):
    """`ragvqa answer --json` as its own process (a cold start), on the demo world."""
    script = Path(sys.executable).parent / "ragvqa"
    args = [str(script), "answer", "--image", str(first_image(world)), "--question", QUESTION,
            "--pipeline", str(world["pipeline"]), "--json", *extra]  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")}  # as a user's
    started = time.perf_counter()
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env={**clean, **(env or {})}
    )
    return proc, time.perf_counter() - started


def broken_model(folder: Path) -> Path:
    """A model folder whose config.json is cut short: vLLM refuses it while starting."""
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    return folder


# ---------------------------------------------------------------------------- the start-up log


def test_startup_log_times_spans_from_the_process_start():
    age = process_age()
    assert age is not None and 0 < age < 24 * 3600  # Linux: from /proc
    assert abs(since_start() - process_age()) < 0.1  # the same clock, two ways
    log = StartupLog()
    with pytest.raises(ValueError), log.span("late"):
        time.sleep(0.02)
        raise ValueError("recorded all the same")
    log.record("early", 0.0, 0.5)
    spans = log.to_json()
    assert list(spans) == ["early", "late"]  # in the order they began
    assert spans["early"] == {"start": 0.0, "end": 0.5, "seconds": 0.5, "thread": "MainThread"}
    late = spans["late"]
    assert 0.02 <= late["seconds"] < 1 and late["end"] == pytest.approx(since_start(), abs=0.1)


# ---------------------------------------------------------------------------- Background


def test_background_gives_its_value_and_raises_its_error_in_the_asking_thread():
    built = Background("x", lambda: threading.current_thread().name)
    assert built.thread.daemon and built.thread.outlives_engine
    assert built.result() == "ragvqa-x"  # built in its own thread, returned in this one
    built.close()
    built.thread.join(5)
    assert not built.thread.is_alive()  # released by close()

    def fail():
        raise UserError("vLLM cannot load 'm' (bad config)", path="p.yaml")

    failed = Background("y", fail)
    with pytest.raises(UserError) as caught:
        failed.result()
    assert str(caught.value) == "p.yaml: vLLM cannot load 'm' (bad config)"
    assert threading.current_thread() is threading.main_thread()
    failed.thread.join(5)
    assert not failed.thread.is_alive()  # nothing outlives a failed build: no close() needed


class Engine:
    def __init__(self):
        self.closed = 0

    def close(self):
        self.closed += 1


def test_background_closes_a_value_nobody_took_and_leaves_a_taken_one():
    go = threading.Event()
    engine = Engine()
    pending = Background("late", lambda: go.wait() and engine)
    pending.close()  # the query failed before the engine was up: close() does not wait
    go.set()
    pending.thread.join(5)
    assert engine.closed == 1  # the thread closed it once built

    taken_engine = Engine()
    taken = Background("taken", lambda: taken_engine)
    assert taken.result() is taken_engine
    taken.close()
    taken.thread.join(5)
    assert taken_engine.closed == 0  # its owner closes it


# ---------------------------------------------------------------------------- when to start


def world_config(world, **reader) -> dict:
    config = yaml.safe_load(world["pipeline"].read_text())
    if reader:
        config["reader"]["generator"] = reader
    return config


def test_start_generator_starts_nothing_it_does_not_own(world):
    folder = world["root"]
    given = Pipeline(world_config(world), folder, components={"generator": Engine()})
    given.start_generator()
    http = Pipeline(world_config(world, type="openai", base_url="http://127.0.0.1:9/v1",
                                 model="m"), folder)  # fmt: skip
    http.start_generator()  # an HTTP reader has no engine to wait for: no preload

    class Own(Pipeline):
        reader = Engine()

    own = Own(world_config(world), folder)
    own.start_generator()
    for pipe in (given, http, own):
        assert not hasattr(pipe, "_reader_start")
        assert "reader_import" not in pipe.startup.to_json()


def test_an_index_mismatch_fails_before_the_engine_starts(world, tmp_path):
    from ragvqa.fixtures.models import tiny_retriever

    other = tiny_retriever(tmp_path / "other", seed=1)
    pipe = Pipeline.load(world["pipeline"], [f"encoder.model={other}"])
    with pytest.raises(UserError, match="the index was built with encoder"):
        pipe.answer(first_image(world), QUESTION)
    assert not hasattr(pipe, "_reader_start")  # no engine was started for it
    assert set(pipe.startup.to_json()) == {"before_load", "load", "kb"}  # no reader_import


# ---------------------------------------------------------------------------- lazy KB


def test_kb_reads_only_the_shards_that_hold_the_rows(world, tmp_path):
    from ragvqa.fixtures.world import entities
    from ragvqa.kb.build import BuildParams, build_kb
    from ragvqa.kb.store import KBStore

    source = str(world["root"] / "kb.json")  # 50 entities, 3 sections each
    manifest = build_kb(BuildParams("evqa", source, shard_pages=10), tmp_path / "kb",
                        progress=False)  # fmt: skip
    assert [s["passages"] for s in manifest["shards"]] == [30] * 5
    kb = KBStore(tmp_path / "kb")
    assert kb._shards == {}  # opening reads kb.json only
    got = kb.passages([95, 3, 95])  # row 95: entity 31, section 2 (shard 3); row 3: entity 1
    ents = entities(50)
    assert [p.passage_id for p in got] == [f"{ents[31].url}#2", f"{ents[1].url}#0",
                                           f"{ents[31].url}#2"]  # fmt: skip
    assert sorted(kb._shards) == [0, 3]
    table = kb.table[[95, 3]]  # the whole-KB datasets table agrees
    assert [p.passage_id for p in got[:2]] == table["passage_id"]
    assert [p.text for p in got[:2]] == table["text"]
    assert kb.row_of(f"{ents[40].url}#1") == 121
    with pytest.raises(IndexError, match="row 150 is not in the KB"):
        kb.passages([150])


def test_kb_shard_of_another_row_count_is_refused(world, tmp_path):
    import shutil

    from ragvqa.kb.store import KBStore

    shutil.copytree(world["root"] / "kb", tmp_path / "kb")
    path = tmp_path / "kb" / "kb.json"
    manifest = json.loads(path.read_text())
    manifest["shards"][0]["passages"] -= 1
    manifest["passages"] -= 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="KB shard has 150 passages, kb.json says 149"):
        KBStore(tmp_path / "kb").passage(0)


# ---------------------------------------------------------------------------- real engines


@pytest.mark.engine  # the `ragvqa answer` process starts its own engine
def test_cold_answer_retrieves_while_the_engine_starts(world):
    proc, _ = run_answer(world)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert record["error"] is None and len(record["retrieved"]) == 5
    spans = record["startup"]
    assert set(spans) == {"before_load", "load", "reader_import", "reader", "encoder", "kb",
                          "index"}  # fmt: skip
    reader = spans["reader"]
    assert reader["thread"] == "ragvqa-reader"
    assert {spans[k]["thread"] for k in ("reader_import", "encoder", "kb", "index")} == {
        "MainThread"
    }
    # the KB opens (its manifest, for the index's checks) before vLLM is imported; then the
    # engine starts, and the encoder and the index load while it starts: each began after the
    # engine was asked for and before it was up
    assert spans["kb"]["end"] <= spans["reader_import"]["start"]
    assert spans["reader_import"]["end"] <= reader["start"]
    for name in ("encoder", "index"):
        assert reader["start"] <= spans[name]["start"] < reader["end"]
    assert spans["before_load"]["end"] == spans["load"]["start"]


@pytest.mark.engine  # vLLM is started (and refuses the model before its engine process)
def test_an_engine_failure_in_the_background_is_the_same_one_line_error(world, tmp_path):
    from ragvqa.generate.vllm_backend import VLLMGenerator

    model = broken_model(tmp_path / "broken")
    settings = {"dtype": "float32", "max_model_len": 512, "enforce_eager": True,
                "gpu_memory_utilization": 0.15}  # fmt: skip
    with pytest.raises(UserError) as direct:  # started in this (the main) thread
        VLLMGenerator(str(model), **settings)
    assert str(direct.value).startswith(f"vLLM cannot load '{model}' (")
    pipe = Pipeline.load(world["pipeline"], [f"reader.generator.model={model}"])
    with pytest.raises(UserError) as background:
        pipe.answer(first_image(world), QUESTION)
    assert str(background.value) == str(direct.value)
    assert pipe.startup.to_json()["reader"]["thread"] == "ragvqa-reader"
    pipe.close()
    proc, _ = run_answer(world, "--set", f"reader.generator.model={model}", timeout=240)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: {direct.value}"]


def processes_with(tag: str) -> list[str]:
    """Processes whose environment holds `tag` (they inherited it from one test run)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if tag.encode() in environ.read_bytes():
                found.append(environ.parent.name)
        except OSError:
            continue
    return found


@pytest.mark.engine  # the `ragvqa answer` process starts an engine and then fails
def test_a_retrieval_error_while_the_engine_starts_leaves_no_engine_behind(world, tmp_path):
    import shutil

    root = tmp_path / "w"
    root.mkdir()
    for name in ("index", "models"):
        (root / name).symlink_to(world["root"] / name)
    shutil.copytree(world["root"] / "kb", root / "kb")
    shard = next((root / "kb" / "passages").glob("*.arrow"))
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[:-100])  # found when the search reads passages
    (root / "pipeline.yaml").write_text(world["pipeline"].read_text())
    tag = uuid.uuid4().hex
    proc, wall = run_answer({**world, "pipeline": root / "pipeline.yaml"},
                            env={"RAGVQA_TEST_RUN": tag})  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    problem = f"KB shard has {size - 100} bytes, kb.json says {size} (truncated or replaced)"
    assert proc.stderr.strip().splitlines() == [f"error: {shard}: {problem}"]
    assert wall < 120  # the engine still starting did not hold the process
    deadline = time.monotonic() + 10
    while processes_with(f"RAGVQA_TEST_RUN={tag}") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with(f"RAGVQA_TEST_RUN={tag}") == []
