"""`ragvqa bench` on the local executor against the Ray executor at 1 and 2 replicas.

Each mode is a fresh `ragvqa bench infoseek --json` process on the offline demo world with
`--questions` InfoSeek questions (tiny random ReT-2-style retriever, flat faiss index, tiny
Qwen2.5-VL reader through vLLM on the CPU), reader batches of `--batch`, its own empty stage
cache, so every run pays for its start-up (a local Ray, each replica's engine) and computes
every stage. Modes run interleaved, `--rounds` rounds, so each meets the same load. Prints
JSON: per mode each round's wall seconds, the run's stage timings, questions per second over
the reading stage (`read_qps`, reader batches through the replicas) and over the whole process
(`wall_qps`), the load average before it; and the best round of each mode, the Ray executor's
overhead at 1 replica against the local one (`overhead_s`, wall), and the 2-replica speed-up of
the reading stage. On a machine with fewer cores than replicas need, two replicas share them:
the figure then says what the executor costs, not what a cluster gains.

Run: python benchmarks/perf/ray_executor.py [--questions 240] [--batch 16] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = {
    "local": [],
    "ray-1": ["--executor", "ray", "--replicas", "1"],
    "ray-2": ["--executor", "ray", "--replicas", "2"],
}


def bench(world: dict[str, Path], out: Path, batch: int, extra: list[str]) -> dict[str, Any]:
    """One `ragvqa bench` process: wall seconds, its metrics' timings and counts."""
    command = [
        sys.executable, "-m", "ragvqa.cli", "bench", "infoseek",
        "--pipeline", str(world["pipeline"]), "--out", str(out), "--cache", str(out) + ".cache",
        "--questions", str(world["infoseek_questions"]), "--qtypes", str(world["infoseek_qtypes"]),
        "--withkb", str(world["infoseek_withkb"]), "--images", str(world["infoseek_images"]),
        "--set", f"reader.batch_size={batch}", "--json", *extra,
    ]  # fmt: skip
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(extra) or 'local'}: exit {done.returncode}: {done.stderr[-2000:]}")
    metrics = json.loads(done.stdout)
    timings = metrics["timings"]
    questions = metrics["counts"]["questions"]
    read = timings["generate"]["seconds"]
    return {
        "wall_s": round(wall, 2),
        "load_before": round(load, 2),
        "timings_s": {k: v.get("seconds") for k, v in timings.items()},
        "read_qps": round(questions / read, 2) if read else None,
        "wall_qps": round(questions / wall, 2),
        "execution": metrics["execution"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=240)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    from ragvqa.fixtures.world import build_world

    root = args.dir or Path(tempfile.mkdtemp(prefix="ragvqa-ray-perf-"))
    world = build_world(root / "world", infoseek_questions=args.questions)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        for mode, extra in MODES.items():
            out = root / "runs" / f"{mode}-{round_}"
            runs[mode].append(bench(world, out, args.batch, extra))
            shutil.rmtree(str(out) + ".cache", ignore_errors=True)
    best = {mode: min(rs, key=lambda r: r["wall_s"]) for mode, rs in runs.items()}
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "questions": args.questions,
        "reader_batch": args.batch,
        "runs": runs,
        "best": best,
        "overhead_s": round(best["ray-1"]["wall_s"] - best["local"]["wall_s"], 2),
        "read_speedup_2_replicas": round(
            (best["ray-2"]["read_qps"] or 0) / (best["ray-1"]["read_qps"] or 1), 2
        ),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
