"""Encoder throughput and memory of the ReT presets at real sizes (random weights): prints JSON.

For each preset (ReT v1 and ReT-2 at CLIP ViT-B/32 and ViT-L/14 sizes) and each dtype, on the
same batches (224 px images, 32 text tokens): the bare CLIP towers alone (the floor no ReT
encoder can beat), ReT query encoding and ReT document encoding, in items/s; the ReT overhead
over the towers; peak memory; and index bytes per document (fp16 storage). Runs on CUDA when
present (fp32 and bf16), else on CPU (fp32). No weights are downloaded.

Run: python benchmarks/perf/encoder.py [--batch 256] [--repeats 5] [--presets ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch

from ragvqa.models.config import PRESETS, preset
from ragvqa.models.retriever import RetRetriever

TEXT_TOKENS = 32


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fns: dict, device: str, repeats: int) -> dict[str, float]:
    """Median seconds of each function over `repeats` rounds, after one warm-up round.

    The functions run interleaved (round by round), so a slow phase of the machine affects
    all of them alike instead of biasing whichever ran during it.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def _full_towers(config, device, dtype):
    """The complete CLIP towers (every block), as the original ReT code runs them."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel

    text = CLIPTextModel(CLIPTextConfig(**config.text_config))
    vision = CLIPVisionModel(CLIPVisionConfig(**config.vision_config))
    return text.to(device, dtype).eval(), vision.to(device, dtype).eval()


def bench_preset(name: str, device: str, dtype: torch.dtype, batch: int, repeats: int) -> dict:
    config = preset(name)
    torch.manual_seed(0)
    model = RetRetriever(config).to(device=device, dtype=dtype).eval()
    text_tower, vision_tower = _full_towers(config, device, dtype)
    size = config.vision_config["image_size"]
    input_ids = torch.randint(1, 49000, (batch, TEXT_TOKENS), device=device)
    attention_mask = torch.ones_like(input_ids)
    pixels = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixels)

    def towers():
        text_tower(input_ids=input_ids, attention_mask=attention_mask)
        vision_tower(pixel_values=pixels)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        t = _timed(
            {
                "towers": towers,
                "query": lambda: model.features("query", **inputs),
                "document": lambda: model.features("document", **inputs),
            },
            device,
            repeats,
        )
    t_towers, t_query, t_doc = t["towers"], t["query"], t["document"]
    head = config.head("document")
    drift = _score_drift(config, model, inputs) if dtype != torch.float32 else None
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "preset": name,
        "dtype": str(dtype).replace("torch.", ""),
        "batch": batch,
        "towers_items_per_s": round(batch / t_towers, 2),
        "queries_per_s": round(batch / t_query, 2),
        "documents_per_s": round(batch / t_doc, 2),
        "query_overhead_vs_towers_pct": round(100 * (t_query / t_towers - 1), 1),
        "document_overhead_vs_towers_pct": round(100 * (t_doc / t_towers - 1), 1),
        "peak_memory_mib": round(peak, 1),
        "peak_memory_kind": "cuda max allocated" if device == "cuda" else "process max RSS",
        "index_bytes_per_document_fp16": head.output_vectors * head.output_dim * 2,
        "vectors_per_document": head.output_vectors,
        "max_score_diff_vs_fp32": drift,
    }


def _score_drift(config, model, inputs, n: int = 32) -> float:
    """Largest |score(dtype) - score(fp32)| over n x n query-document pairs, where a score is
    the late-interaction sum divided by the number of query vectors (so it lies in [-1, 1])."""
    from ragvqa.models.loss import late_interaction

    torch.manual_seed(0)  # the same random weights as `model`
    reference = RetRetriever(config).to(device=model.device, dtype=torch.float32).eval()
    sub = {k: v[:n] for k, v in inputs.items()}
    with torch.inference_mode():
        scores = []
        for m, dtype in ((model, model.dtype), (reference, torch.float32)):
            x = {**sub, "pixel_values": sub["pixel_values"].to(dtype)}
            q, d = m.features("query", **x).float(), m.features("document", **x).float()
            scores.append(late_interaction(q, d) / q.shape[1])
    del reference
    return round((scores[0] - scores[1]).abs().max().item(), 5)


def _child(name: str, dtype: str, batch: int, repeats: int) -> dict:
    import subprocess
    import sys

    command = [
        sys.executable,
        __file__,
        "--presets",
        name,
        "--dtypes",
        dtype,
        "--batch",
        str(batch),
        "--repeats",
        str(repeats),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["results"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="default: 256 on GPU, 4 on CPU")
    parser.add_argument("--repeats", type=int, default=None, help="default: 5 on GPU, 2 on CPU")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS))
    parser.add_argument("--dtypes", nargs="*", default=None, help="float32 / bfloat16 / float16")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtypes = args.dtypes or (["float32", "bfloat16"] if device == "cuda" else ["float32"])
    batch = args.batch or (256 if device == "cuda" else 4)
    repeats = args.repeats or (5 if device == "cuda" else 2)
    if len(args.presets) * len(dtypes) > 1:
        # one process per measurement, so each peak memory figure is its own
        results = [_child(name, dt, batch, repeats) for name in args.presets for dt in dtypes]
    else:
        results = [bench_preset(args.presets[0], device, getattr(torch, dtypes[0]), batch, repeats)]
    hardware = torch.cuda.get_device_name() if device == "cuda" else platform.processor()
    print(
        json.dumps(
            {
                "device": device,
                "hardware": hardware or platform.machine(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "text_tokens": TEXT_TOKENS,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
