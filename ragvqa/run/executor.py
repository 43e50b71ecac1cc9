"""Where `ragvqa bench` runs a pipeline's stages: in this process, or on replicas on Ray.

The benchmark runner hands the questions to an executor in two steps, each the `Pipeline`'s own:
`retrieve` (encode, search, rerank: `Pipeline.retrieve_batch`) and the reading, which is always
`Pipeline.read_batch` in the runner's process, so the reader batches, their journal keys and the
journal itself are the same whichever executor runs them; the executor only says where each
batch is generated (`read_chunks`, see `ragvqa.pipeline.ChunkReader`).

- `LocalExecutor` (the default) is today's single process: `read_chunks` is None, so
  `read_batch` reads the batches in turn.
- `RayExecutor` (ragvqa.run.ray_executor) runs N replicas of the whole pipeline as Ray actors;
  the run folder, its lock and its journal stay with the driver.

The pipeline's `execution` section chooses (`pipe.settings.execution`); `--executor` and
`--replicas` on the command line are the same keys (`--set execution.executor=ray`). The section
is not part of a run's identity: both executors give the same answers, and a run may resume on
either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ragvqa.schema.sections import ExecutionSection
from ragvqa.types import Answer, Passage, VQAQuery

if TYPE_CHECKING:
    from ragvqa.pipeline import ChunkReader, Pipeline
    from ragvqa.run.cache import StageCache

Timings = dict[str, dict[str, Any]]


class Executor(Protocol):
    """Runs a pipeline's stages for the benchmark runner."""

    read_chunks: ChunkReader | None  # where reader batches are generated (None: in turn, here)

    def retrieve(
        self,
        pipe: Pipeline,
        queries: Sequence[VQAQuery],
        *,
        evidence: Mapping[str, Sequence[Passage]] | None,
        cache: StageCache | None,
        timings: Timings,
        progress: bool,
    ) -> list[Answer]:
        """`Pipeline.retrieve_batch` over `queries`, wherever the executor runs it."""
        ...

    def record(self) -> dict[str, Any]:
        """What the run's metrics record of the execution: executor, replicas, placement."""
        ...

    def close(self) -> None:
        """Stop what the executor started (replicas, a local Ray)."""
        ...


class LocalExecutor:
    """Every stage in this process: `Pipeline.retrieve_batch`, then `read_batch` in turn."""

    read_chunks = None

    def retrieve(
        self,
        pipe: Pipeline,
        queries: Sequence[VQAQuery],
        *,
        evidence: Mapping[str, Sequence[Passage]] | None,
        cache: StageCache | None,
        timings: Timings,
        progress: bool,
    ) -> list[Answer]:
        return pipe.retrieve_batch(
            queries, evidence=evidence, cache=cache, timings=timings, progress=progress
        )

    def record(self) -> dict[str, Any]:
        return {"executor": "local", "replicas": 1}

    def close(self) -> None:
        """Nothing to stop: the pipeline is the caller's."""


def make_executor(
    pipe: Pipeline,
    *,
    cache: StageCache | None,
    reader: bool = True,
    notify: Callable[[str], None] | None = None,
    progress: bool = False,
) -> Executor:
    """The executor the pipeline's `execution` section names. `cache`: the stage cache the
    replicas share; `reader`: the run reads (a replica starts its reader early); `notify`: told
    in one line when a replica dies."""
    settings = pipe.settings.execution or ExecutionSection()  # validated when it was loaded
    if settings.executor == "local":
        return LocalExecutor()
    from ragvqa.run.ray_executor import RayExecutor  # imports ray: only when asked for

    generator = (pipe.config.get("reader") or {}).get("generator") or {}
    return RayExecutor(
        pipe,
        settings,
        cache=cache,
        notify=notify,
        reader=reader,
        progress=progress,
        trust_remote_code=generator.get("trust_remote_code") is True,  # allowed on the driver
    )
