"""`ragvqa bench --executor ray`: replicas of the demo world's pipeline on a local Ray (CPU).

What the executor must keep: the local executor's answers, question for question; one run
folder whose journal takes answers from any replica (a driver killed with kill -9 resumes where
it stopped); a replica that dies is restarted and its batch read again; an error in a replica
is one line naming it; the run's files say how it ran. The settings' and timings' plumbing is
tested without Ray, in the fast tier.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import infoseek_bench, wait_for_memory

from ragvqa.errors import UserError
from ragvqa.pipeline import Pipeline
from ragvqa.run.executor import LocalExecutor, make_executor
from ragvqa.run.folder import _compared
from ragvqa.run.ray_executor import RayExecutor, _add
from ragvqa.run.records import read_metrics, read_records
from ragvqa.run.runner import BenchRunner, BenchSpec

HERE = Path(__file__).resolve().parent
# reader batches of 4: the 30 questions make 8 batches for the replicas to share; each
# replica's engine with the session engine's KV cache (1.2 GB, not the world's 3.5 GB): two
# replicas and the tests beside them must stay below Ray's memory monitor (95% of the machine)
BATCHES = ["reader.batch_size=4", "reader.generator.gpu_memory_utilization=0.05"]
# the kill test's reader: the same tiny model through transformers, no vLLM start-up per process
TRANSFORMERS = ["reader.generator={type: transformers, model: models/reader, device: cpu}"]


def spec(world) -> BenchSpec:
    files = {
        "questions": str(world["infoseek_questions"]),
        "qtypes": str(world["infoseek_qtypes"]),
        "withkb": str(world["infoseek_withkb"]),
    }
    return BenchSpec("infoseek", files, images={"oven": str(world["infoseek_images"])})


def bench_args(world, out: Path, cache: Path, overrides: list[str]) -> list[str]:
    args = infoseek_bench(world, "--out", out, "--cache", cache)
    for override in overrides:
        args += ["--set", override]
    return args


def run(
    argv: list[str], log: Path, timeout: int = 400, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """A driver in its own process group (stdout and stderr to `log`); whatever it leaves
    behind is killed afterwards, as an init system would reap it."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "OMP_NUM_THREADS": "1", **(env or {})}
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, *argv], env=env, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = proc.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return code, log.read_text()


def answers(out: Path) -> list[tuple]:
    """Each question's answer, raw output and retrieved passages, in order."""
    return [
        (r.data_id, r.prediction, r.raw_output, [p["passage_id"] for p in r.retrieved])
        for r in read_records(out)
    ]


@pytest.fixture(scope="module")
def local_run(world, vllm_engine, tmp_path_factory) -> Path:
    """The local executor's run of the demo pipeline (the session's engine as its reader)."""
    out = tmp_path_factory.mktemp("local") / "run"
    pipe = Pipeline.load(world["pipeline"], BATCHES, components={"generator": vllm_engine})
    BenchRunner(pipe, spec(world), out, cache=out.parent / "cache", progress=False).run()
    return out


# -- with Ray --------------------------------------------------------------------------------------
@pytest.mark.engine  # a local Ray and two replicas, each starting a vLLM engine
def test_two_replicas_answer_as_the_local_executor_and_outlive_a_killed_replica(
    world, local_run, tmp_path
):
    out, marker = tmp_path / "ray", tmp_path / "died"
    args = bench_args(world, out, tmp_path / "cache", BATCHES)
    wait_for_memory(2 * 0.05)  # the two replicas' engines
    code, log = run(
        [str(HERE / "ray_driver.py"), str(marker), *args, "--executor", "ray", "--replicas", "2"],
        tmp_path / "ray.log",
    )
    assert code == 0, log[-3000:]
    assert marker.is_file()  # a replica's process was killed while it held a batch ...
    restarted = r"replica [12] restarted after its process died \(1 of 2 restarts\)"
    assert re.search(r"replica [12] lost its batch \(", log) and re.search(restarted, log), log
    assert answers(out) == answers(local_run)  # ... and every answer is the local one
    ray_metrics, local_metrics = read_metrics(out), read_metrics(local_run)
    assert ray_metrics["official"] == local_metrics["official"]
    assert ray_metrics["retrieval"] == local_metrics["retrieval"]
    execution = ray_metrics["execution"]
    assert execution["executor"] == "ray" and execution["replicas"] == 2
    assert execution["restarts"] == 1 and execution["address"] == "local"
    assert [p["replica"] for p in execution["placement"]] == [1, 2]
    assert all(p["node"] and p["pid"] > 0 and p["gpus"] == [] for p in execution["placement"])
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["pipeline"]["execution"] == {"executor": "ray", "replicas": 2}
    assert local_metrics["execution"] == {"executor": "local", "replicas": 1}
    # `ragvqa compare` of the two runs: no prediction changed
    code, log = run(["-m", "ragvqa.cli", "compare", str(local_run), str(out), "--json"],
                    tmp_path / "compare.log")  # fmt: skip
    assert code == 0, log
    comparison, _ = json.JSONDecoder().raw_decode(log[log.index("{") :])
    assert comparison["changed"] == 0


@pytest.mark.engine  # a local Ray, twice, with two replicas of a transformers reader
def test_a_ray_driver_killed_with_kill_9_resumes_where_it_stopped(world, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    overrides = ["reader.batch_size=4", *TRANSFORMERS]
    args = [*bench_args(world, out, cache, overrides), "--executor", "ray", "--replicas", "2"]
    # killed half-way through journalling the second batch that came back
    code, log = run([str(HERE / "kill_driver.py"), "generate", *args], tmp_path / "killed.log")
    assert code == -signal.SIGKILL, log[-3000:]
    journal = out / "work" / "answers.jsonl"
    kept = [x for x in journal.read_text().splitlines() if x.endswith("}")]
    assert len(kept) == 4  # the first batch; the second one's line was torn
    assert not (out / "predictions.jsonl").exists()
    code, log = run(["-m", "ragvqa.cli", *args], tmp_path / "resumed.log")
    assert code == 0, log[-3000:]
    lines = [json.loads(x)["record"]["data_id"] for x in journal.read_text().splitlines()
             if x.endswith("}")]  # fmt: skip
    assert len(lines) == len(set(lines)) == 30  # the first batch was not read again
    straight = tmp_path / "straight"
    pipe = Pipeline.load(world["pipeline"], overrides)
    BenchRunner(pipe, spec(world), straight, cache=tmp_path / "c2", progress=False).run()
    assert answers(out) == answers(straight)


@pytest.mark.engine  # a local Ray and one replica, loaded twice
def test_a_replica_that_dies_while_loading_is_loaded_again(world, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "died"
    args = bench_args(world, out, tmp_path / "cache", [])
    code, log = run(
        [str(HERE / "ray_driver.py"), str(marker), *args, "--retrieval-only", "--json",
         "--executor", "ray", "--replicas", "1"],
        tmp_path / "log", env={"RAY_DRIVER_DIE_IN": "load"},
    )  # fmt: skip
    assert code == 0, log[-3000:]
    assert marker.is_file()  # its first process died in `load` ...
    assert re.search(r"replica 1 died while loading \(\w+: .*\); it loads again", log), log
    metrics = read_metrics(out)  # ... and the second one retrieved as a local run does
    recall = metrics["retrieval"]["entity_recall"]  # benchmarks/infoseek/expected.yaml's
    assert (recall["recall@1"], recall["recall@5"]) == pytest.approx((6.67, 36.67), abs=0.01)
    assert [p["replica"] for p in metrics["execution"]["placement"]] == [1]
    assert metrics["execution"]["placement"][0]["pid"] != int(marker.read_text())


@pytest.mark.engine  # a local Ray and one replica
def test_an_error_in_a_replica_is_one_line_naming_it(world, tmp_path):
    out = tmp_path / "run"
    args = bench_args(world, out, tmp_path / "cache", ["encoder.model=missing-encoder"])
    code, log = run(
        ["-m", "ragvqa.cli", *args, "--retrieval-only", "--executor", "ray", "--replicas", "1"],
        tmp_path / "log",
    )
    assert code == 2, log
    errors = [x for x in log.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: replica 1: "), log
    assert "missing-encoder" in errors[0] and "Traceback" not in log
    assert not (out / "predictions.jsonl").exists()


# -- without Ray ---------------------------------------------------------------------------------
def test_execution_settings_and_the_executor_they_choose(world):
    pipe = Pipeline.load(world["pipeline"])
    assert pipe.settings.execution.executor == "local"  # the default section
    assert isinstance(make_executor(pipe, cache=None), LocalExecutor)
    ray_pipe = Pipeline.load(world["pipeline"], ["execution.executor=ray", "execution.replicas=3"])
    settings = ray_pipe.settings.execution
    assert (settings.executor, settings.replicas, settings.max_restarts) == ("ray", 3, 2)
    executor = make_executor(ray_pipe, cache=None, reader=False)
    assert isinstance(executor, RayExecutor)  # nothing started until it is used
    assert executor.record()["placement"] == [] and executor.spec["reader"] is False
    executor.close()


def test_the_execution_section_is_not_part_of_a_runs_identity():
    local = {"pipeline": {"top_k": 5, "execution": {"executor": "local"}}, "inputs": {"a": 1}}
    ray = {"pipeline": {"top_k": 5, "execution": {"executor": "ray", "replicas": 2}}}
    assert _compared(local) == _compared(ray) == {"pipeline": {"top_k": 5}}


def test_shard_timings_add_up():
    total: dict = {}
    _add(
        total,
        {"encode": {"seconds": 1.25, "cached": False}, "search": {"seconds": 0.5, "cached": True}},
    )
    _add(
        total,
        {"encode": {"seconds": 0.0, "cached": True}, "search": {"seconds": 0.25, "cached": True}},
    )
    assert total == {
        "encode": {"seconds": 1.25, "cached": False},  # one shard computed it
        "search": {"seconds": 0.75, "cached": True},  # both came from the cache
    }


def test_the_faiss_index_is_memory_mapped_so_replicas_on_a_node_share_it(tmp_path):
    """A flat index's codes are read in place: the file is mapped into the process (one copy
    per node in the page cache, whatever the number of replicas), and search results are
    those of a copy."""
    import faiss
    import numpy as np

    from ragvqa.index.faiss_index import load_index

    vectors = np.random.default_rng(0).random((500, 16), dtype=np.float32)
    index = faiss.IndexFlatIP(16)
    index.add(vectors)
    path = tmp_path / "faiss.index"
    faiss.write_index(index, str(path))
    mapped = load_index(path)
    assert str(path) in Path("/proc/self/maps").read_text()
    got, want = mapped.search(vectors[:5], 3), index.search(vectors[:5], 3)
    assert (got[1] == want[1]).all() and (got[0] == want[0]).all()


def test_replicas_asking_for_more_gpus_than_the_cluster_has_stop_in_one_line(world):
    """2 replicas x 1 GPU on a cluster with 1 GPU: refused before any actor is placed."""

    class Cluster:  # what the executor asks of Ray here: the cluster's resources
        @staticmethod
        def cluster_resources() -> dict[str, float]:
            return {"CPU": 16.0, "GPU": 1.0}

    pipe = Pipeline.load(world["pipeline"], ["execution.executor=ray", "execution.replicas=2"])
    executor = make_executor(pipe, cache=None)
    executor._ray = Cluster
    assert executor._gpus() == 1.0  # the reader's tensor_parallel_size (1) on a GPU cluster
    with pytest.raises(UserError) as err:
        executor._check_resources(Cluster, 1.0)
    assert str(err.value) == (
        "2 replicas x 1 GPU need 2 GPUs; the Ray cluster has 1 "
        "(execution.replicas, execution.gpus_per_replica)"
    )
    executor._check_resources(Cluster, 0.5)  # two halves of one GPU fit
