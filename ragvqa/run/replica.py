"""One replica of the pipeline: what the Ray executor (ragvqa.run.ray_executor) runs in an actor.

The replica is given the driver's resolved pipeline mapping, its folder and name, the stage
cache's root, and whether the run reads; it builds its `Pipeline` on its first call (and again
after Ray restarts its process) and then answers the driver's calls: `load` (the parts the run
needs, and where it runs), `retrieve` (a shard of questions through the retrieval stages and
the shared stage cache), `read` (one reader batch), `pid` (the driver's probe after a lost
call) and `close`. Nothing here imports Ray at module level.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragvqa.types import Answer, Passage, VQAQuery

if TYPE_CHECKING:
    from ragvqa.pipeline import Pipeline

Timings = dict[str, dict[str, Any]]


class Replica:
    """One replica of the pipeline, run as a Ray actor: the driver's pipeline mapping, loaded
    on its first call (and again after Ray restarts the actor), with the shared stage cache."""

    def __init__(self, spec: Mapping[str, Any]):
        self.spec = dict(spec)
        self.pipe: Pipeline | None = None
        self.variants: dict[str, Pipeline] = {}

    def _pipeline(self) -> Pipeline:
        if self.pipe is None:
            from ragvqa.pipeline import Pipeline

            spec = self.spec
            if spec["cwd"] and os.path.isdir(spec["cwd"]):  # relative roots, as on the driver
                os.chdir(spec["cwd"])
            self.pipe = Pipeline(
                spec["config"],
                Path(spec["folder"]),
                name=spec["name"],
                trust_remote_code=spec["trust_remote_code"],
            )
        return self.pipe

    def load(self) -> dict[str, Any]:
        """Load what the run needs (encoder and index when it retrieves from one, the reader
        when it reads: the engine starts while the rest loads) and say where this replica
        runs: node address and id, GPU ids, process id, and each part's load seconds."""
        import ray

        pipe = self._pipeline()
        if self.spec["reader"]:
            pipe.start_reader()
        if pipe.retrieval_mode == "index":
            _ = pipe.encoder, pipe.index, pipe.reranker
        if self.spec["reader"]:
            _ = pipe.reader
        context = ray.get_runtime_context()
        return {
            "node": ray.util.get_node_ip_address(),
            "node_id": context.get_node_id(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
            "pid": os.getpid(),
            "startup_s": {k: v["seconds"] for k, v in pipe.startup.to_json().items()},
            "rss_mib": _rss_mib(),  # this process (its reader's engine process apart)
        }

    def retrieve(
        self, queries: Sequence[VQAQuery], evidence: Mapping[str, Sequence[Passage]] | None
    ) -> tuple[list[Answer], Timings]:
        from ragvqa.run.cache import StageCache

        cache = self.spec["cache"]
        stage_cache = StageCache(Path(cache[0]), cache[1]) if cache else None
        timings: Timings = {}
        answers = self._pipeline().retrieve_batch(
            queries, evidence=evidence, cache=stage_cache, timings=timings
        )
        return answers, timings

    def read(self, prompt: str, chunk: Sequence[Answer]) -> list[Answer]:
        """One reader batch, read with the answer template `prompt` (a baseline's own)."""
        pipe = self._pipeline()
        if prompt != pipe.reader_settings.prompt:
            if prompt not in self.variants:
                self.variants[prompt] = pipe.variant(prompt=prompt)
            pipe = self.variants[prompt]
        return pipe.read_batch(chunk)

    def pid(self) -> int:
        """This replica's process id (the driver's probe after a lost call)."""
        return os.getpid()

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()


def _rss_mib() -> float | None:
    """This process's resident memory in MiB (psutil comes with Ray); a memory-mapped index
    counts only the pages it touched, which the node's other replicas share."""
    try:
        import psutil
    except ImportError:
        return None
    return round(psutil.Process().memory_info().rss / 2**20, 1)
