"""Cold `ragvqa answer` on the offline demo world: whole-process wall time, with its breakdown.

Each run is a fresh process (`ragvqa answer --json`, one question, the demo world's pipeline:
tiny random ReT-2-style retriever, flat faiss index, vLLM reader), so every run pays for
imports, loading the encoder, KB and index, starting the vLLM engine, and closing it. The
modes below run interleaved, `--runs` rounds, so that each meets the same load on a shared
machine. Prints JSON, per mode every run and the best (least wall time): `wall_s`, `cpu_s`
(user + system, engine processes included when reaped), `output_at_s` (when its stdout
began: the rest is the interpreter's exit), the load average before it, and for `ragvqa
answer` its record's `startup` block (when each component loaded, seconds since the process
started, by which thread) and stage `timings`. Modes:

- `answer`: `ragvqa answer ... --json` as installed;
- `sequential` (with `--sequential`): the same command with the loading order before issue 16
  (the reader's engine started when the first prompt is read, after retrieval; the KB read
  through `datasets`);
- `floor` (with `--floor`): a process that only imports vLLM, creates `vllm.LLM(...)` on the
  demo reader with the pipeline's engine arguments and shuts it down (seconds of each): what
  vLLM's own start-up costs here.

Run: python benchmarks/perf/cold_answer.py [--runs 3] [--sequential] [--floor] [--dir DIR]
(one vLLM engine at a time: on a shared machine, wrap it in `flock`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

QUESTION = "In which city is this tower?"
# `ragvqa` with the loading order it had before issue 16 (run as `python -c`)
SEQUENTIAL = """
import sys
from ragvqa.components import Components
from ragvqa.kb.store import KBStore
from ragvqa.cli.main import app

Components.start_generator = lambda self: None  # the engine starts when first needed
opened = KBStore.__init__
def datasets_kb(self, folder):
    opened(self, folder)
    self._starts = None  # passages read through the whole-KB datasets table
KBStore.__init__ = datasets_kb
app(sys.argv[1:], prog_name="ragvqa")
"""
FLOOR = """
import json, sys, time
started = time.perf_counter()
from vllm import LLM
imported = time.perf_counter()
llm = LLM(model=sys.argv[1], **json.loads(sys.argv[2]))
ready = time.perf_counter()
llm.llm_engine.engine_core.shutdown()
print(json.dumps({"import_s": round(imported - started, 3), "llm_s": round(ready - imported, 3),
                  "shutdown_s": round(time.perf_counter() - ready, 3)}))
"""
ENGINE = {  # the demo world's reader.generator settings (ragvqa.fixtures.world.PIPELINE)
    "dtype": "float32",
    "max_model_len": 512,
    "enforce_eager": True,
    "gpu_memory_utilization": 0.15,
}


def run(command: list[str], env: dict[str, str] | None = None) -> tuple[dict[str, float], str]:
    """One fresh process: its wall and CPU seconds (user + system, with the engine processes
    it reaped), when its output began (seconds after its start), the load average before it,
    and its stdout. A failure stops the benchmark."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    drain.start()
    first, lines = None, []
    for line in proc.stdout:
        first = first or time.perf_counter() - started
        lines.append(line)
    code = proc.wait()
    wall = time.perf_counter() - started
    drain.join()
    if code != 0:
        sys.exit(f"{command[:3]} failed ({code}): {''.join(errors).strip()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    figures = {"wall_s": wall, "cpu_s": used, "output_at_s": first or wall, "load_1m": load}
    return {k: round(v, 3) for k, v in figures.items()}, "".join(lines)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs, and the best (least wall time) with its record's breakdown."""
    best = min(runs, key=lambda r: r["wall_s"])
    return {"runs": runs, "best_wall_s": best["wall_s"], "best": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sequential", action="store_true", help="also the pre-16 order")
    parser.add_argument("--floor", action="store_true", help="also vllm.LLM(...) alone")
    parser.add_argument("--dir", type=Path, default=None, help="world folder (kept)")
    args = parser.parse_args()
    from ragvqa.fixtures.world import build_world

    root = args.dir or Path(tempfile.mkdtemp(prefix="ragvqa-cold-"))
    world_root = root / "world"
    if not world_root.is_dir():
        build_world(world_root)
    image = sorted((world_root / "infoseek" / "images").rglob("*.jpg"))[0]
    argv = ["answer", "--pipeline", str(world_root / "pipeline.yaml"), "--image", str(image)]
    argv += ["--question", QUESTION, "--json"]
    ragvqa = shutil.which("ragvqa", path=str(Path(sys.executable).parent)) or "ragvqa"
    model = str(world_root / "models" / "reader")
    quiet = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"}  # vLLM's logs as under ragvqa
    quiet["VLLM_LOGGING_STREAM"] = "ext://sys.stderr"
    commands = {"answer": ([ragvqa, *argv], None)}
    if args.sequential:
        commands["sequential"] = ([sys.executable, "-c", SEQUENTIAL, *argv], None)
    if args.floor:
        commands["floor"] = ([sys.executable, "-c", FLOOR, model, json.dumps(ENGINE)], quiet)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in commands}
    for _ in range(args.runs):  # interleaved, so that each mode meets the same load
        for name, (command, env) in commands.items():
            figures, out = run(command, env)
            record = json.loads(out.strip().splitlines()[-1] if name == "floor" else out)
            if name != "floor":
                record = {k: record[k] for k in ("startup", "timings", "answer")}
            runs[name].append({**figures, **record})
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "python": platform.python_version(),
        "command": "ragvqa " + " ".join(argv),
        **{name: summary(r) for name, r in runs.items()},
    }
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
