"""Bench orchestration on the offline demo world: prints JSON.

1. Orchestration overhead: a cold `bench` run's wall time against the sum of its stage compute
   times (encode, search, rerank, generate); target: overhead <= 10% of the wall time.
2. Stage cache: questions/s when only the prompt changes, with the cache (encode, search and
   rerank reused) and without it (every stage recomputed); target: >= 5x faster with it.

The reader engine is started (and the encoder and index loaded) before timing, so the figures
are steady-state; engine start-up is reported on its own. The pipeline is the demo world's with
section reranking (`ret_sections`, 5 entities), the shape of pipelines/ret-sections-*.yaml.

Run: python benchmarks/perf/pipeline.py [--questions 200] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    from ragvqa.fixtures.world import build_world
    from ragvqa.pipeline import Pipeline
    from ragvqa.run.runner import BenchRunner, BenchSpec

    root = args.dir or Path(tempfile.mkdtemp(prefix="ragvqa-perf-"))
    started = time.perf_counter()
    world = build_world(root / "world", infoseek_questions=args.questions)
    built = time.perf_counter() - started
    overrides = ["rerank.type=ret_sections", "rerank.top_entities=5", "reader.batch_size=64"]
    pipe = Pipeline.load(world["pipeline"], overrides)
    started = time.perf_counter()
    _ = pipe.generator, pipe.index, pipe.reranker
    startup = time.perf_counter() - started
    files = {
        "questions": str(world["infoseek_questions"]),
        "qtypes": str(world["infoseek_qtypes"]),
        "withkb": str(world["infoseek_withkb"]),
    }
    spec = BenchSpec("infoseek", files, images={"oven": str(world["infoseek_images"])})

    def run(name: str, p: Pipeline, use_cache: bool) -> dict:
        out = root / "runs" / name
        t0 = time.perf_counter()
        metrics = BenchRunner(p, spec, out, cache=root / "cache", use_cache=use_cache,
                              progress=False).run()  # fmt: skip
        wall = time.perf_counter() - t0
        stages = {k: v["seconds"] for k, v in metrics["timings"].items() if k != "total"}
        return {
            "wall_s": round(wall, 3),
            "stages_s": stages,
            "qps": round(args.questions / wall, 2),
        }

    cold = run("cold", pipe, use_cache=True)
    compute = sum(cold["stages_s"].values())
    other = pipe.with_prompt("answer/evidence_fallback@1")
    cached = run("prompt-cached", other, use_cache=True)
    uncached = run("prompt-uncached", other, use_cache=False)
    pipe.close()
    print(
        json.dumps(
            {
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                },
                "questions": args.questions,
                "world_build_s": round(built, 1),
                "engine_and_index_startup_s": round(startup, 1),
                "cold_run": cold,
                "orchestration_overhead_pct": round(
                    100 * (cold["wall_s"] - compute) / cold["wall_s"], 2
                ),
                "prompt_change_with_cache": cached,
                "prompt_change_without_cache": uncached,
                "cache_speedup": round(uncached["wall_s"] / cached["wall_s"], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
