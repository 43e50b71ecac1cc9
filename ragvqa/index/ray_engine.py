"""Document encoding as a Ray Data job, for KBs too large for one machine's GPUs.

Each task is one embedding shard (a row range of the KB); an actor pool holds one encoder (ReT
or text) per actor (one GPU each when the cluster has GPUs) and writes finished shards straight
into the index folder with the same code as the in-process path, so the files are the same and
a killed job resumes the same way (finished shards are skipped). On a cluster, the KB and the index
folder must be on storage every node sees (NFS, a mounted bucket). Ray is imported only here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ragvqa.index.documents import document_text
from ragvqa.index.shards import write_shard
from ragvqa.kb.store import KBStore
from ragvqa.models.checkpoint import parse_dtype
from ragvqa.models.encoders import load_encoder
from ragvqa.ray_cluster import join_or_start, ray_module, stop


class _ShardEncoder:
    """A Ray actor: loads the KB and the encoder once, then encodes whole shards."""

    def __init__(
        self,
        kb: str,
        encoder: str,
        out: str,
        template: str,
        batch_size: int,
        dtype: str | None = None,
    ):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.kb = KBStore(kb)
        self.encoder = load_encoder(  # a ReT or a text encoder, as in-process
            encoder, device=device, dtype=parse_dtype(dtype), batch_size=batch_size, progress=False
        )
        self.out, self.template = Path(out), template

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        for shard, start, end in zip(batch["shard"], batch["start"], batch["end"], strict=True):
            docs = [
                replace(p, text=document_text(p, self.template))
                for p in self.kb.passages(range(int(start), int(end)))
            ]
            write_shard(self.out / "emb", int(shard), self.encoder.encode_documents(docs))
        return {"shard": batch["shard"]}


def encode_with_ray(
    kb: str,
    encoder: str,
    out: Path,
    template: str,
    batch_size: int,
    todo: list[tuple[int, int, int]],
    *,
    address: str | None = None,
    actors: int = 0,
    dtype: str | None = None,
) -> list[int]:
    """Encode the (shard, start, end) tasks on a Ray cluster; returns the shards written.

    Args:
        address: Ray cluster address ("auto", "ray://host:10001"); None: `RAY_ADDRESS`, else
            a local Ray on this machine (loopback only; `ragvqa.ray_cluster`).
        actors: Encoder actors (0: one per GPU, or 2 on a machine without GPUs).
        dtype: Encoder dtype name (None: bfloat16 on a GPU, float32 on a CPU).
    """
    ray_module("--engine ray")  # without Ray: one line, even with nothing left to encode
    if not todo:
        return []
    ray, started_here = join_or_start("--engine ray", address)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        pool = actors or (gpus if gpus else 2)
        items = [{"shard": s, "start": a, "end": b} for s, a, b in todo]
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        written = dataset.map_batches(
            _ShardEncoder,
            fn_constructor_args=(kb, encoder, str(out), template, batch_size, dtype),
            batch_size=1,
            concurrency=min(pool, len(items)),
            num_gpus=1 if gpus else 0,
        ).take_all()
        return sorted(int(row["shard"]) for row in written)
    finally:
        stop(ray, started_here)
