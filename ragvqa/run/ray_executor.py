"""The Ray executor of `ragvqa bench`: N replicas of the whole pipeline, one Ray actor each.

Why whole-pipeline replicas rather than Ray Data stages (docs/cluster.md has the figures): the
reader is where the time goes (a 7B multimodal reader reads a question in tens of milliseconds on
a GPU; the encoder and faiss take well under a millisecond), so the one thing that must scale
is the reader, and a replica that holds encoder, index and reader on its GPU keeps the stage
loop, the stage cache and the journal keys exactly as they are in one process. The driver keeps
the run folder, its lock and its journal: it cuts the work into the same reader batches as the
local executor (`Pipeline.read_batch`), sends each batch to a free replica and journals the
answers as they come back, in any order. The answers are therefore the local executor's,
question for question (greedy decoding), and a run killed on one executor resumes on either.

Retrieval goes first, in shards of `execution.shard` questions spread over the replicas (each
shard through the shared stage cache), then reading: with greedy decoding the reader batches
being the local ones is what makes the answers equal.

Failure: a replica whose process dies (out of memory, a killed node) is restarted by Ray up to
`execution.max_restarts` times; the batch it held goes back in the queue, to whichever replica is
free first, and the replica is probed until it answers from its new process (a restart, counted
in the run's metrics). A replica dead for good, or out of reach for two minutes, is given up,
and the run goes on with the others; when none is left the run stops with one line, and resumes
later from its journal. An error
raised in a replica (a missing model, a bad pipeline) is that error's one line, naming the
replica. Ray is imported only here.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragvqa.errors import UserError, first_line
from ragvqa.ray_cluster import join_or_start, stop
from ragvqa.run.replica import Replica, Timings
from ragvqa.schema.sections import ExecutionSection
from ragvqa.types import Answer, Passage, VQAQuery

if TYPE_CHECKING:
    from ragvqa.pipeline import Pipeline
    from ragvqa.progress import ProgressBar
    from ragvqa.run.cache import StageCache

# what a replica's environment takes from the driver's: data and cache roots, hub and vLLM settings
FORWARDED_ENV = ("RAGVQA_", "HF_", "VLLM_", "TRANSFORMERS_", "CUDA_DEVICE_ORDER")
PROBES, PROBE_WAIT = 120, 1.0  # a replica out of reach for 2 minutes is given up


@dataclass
class _Slot:
    """The driver's view of one replica."""

    number: int
    actor: Any
    deaths: int = 0
    alive: bool = True
    probes: int = 0
    place: dict[str, Any] | None = None


class RayExecutor:
    """`execution.replicas` replicas of the pipeline on the Ray cluster at `RAY_ADDRESS`, or
    on a Ray started here; see the module's docstring."""

    def __init__(
        self,
        pipe: Pipeline,
        settings: ExecutionSection,
        *,
        cache: StageCache | None,
        notify: Callable[[str], None] | None = None,
        trust_remote_code: bool = False,
        reader: bool = True,
        progress: bool = False,
    ):
        self.pipe, self.settings, self.notify = pipe, settings, notify
        self.progress = progress
        self.spec = {
            "config": pipe.config,
            "folder": str(pipe.folder),
            "name": pipe.name,
            "cwd": os.getcwd(),
            "trust_remote_code": trust_remote_code,
            "cache": (str(cache.dir.parent), cache.enabled) if cache is not None else None,
            "reader": reader,
        }
        self.slots: list[_Slot] = []
        self.address = os.environ.get("RAY_ADDRESS") or None
        self._ray: Any = None
        self._started_ray = False

    # -- the executor ---------------------------------------------------------------------------
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
        """The retrieval stages in shards on the replicas; with given evidence or no index
        (nothing to encode), here, as the local executor does."""
        self.start()
        if evidence is not None or pipe.retrieval_mode != "index":
            return pipe.retrieve_batch(
                queries, evidence=evidence, cache=cache, timings=timings, progress=progress
            )
        size = self.settings.shard
        shards = [list(queries[i : i + size]) for i in range(0, len(queries), size)]
        from ragvqa.progress import ProgressBar

        out: list[list[Answer]] = [[] for _ in shards]
        with ProgressBar("retrieving", len(shards), enabled=progress) as bar:
            for i, (answers, got) in self._run("retrieve", [(s, None) for s in shards], bar):
                out[i] = answers
                _add(timings, got)
        return [a for shard in out for a in shard]

    def read_chunks(
        self, pipe: Pipeline, chunks: Sequence[Sequence[Answer]], bar: ProgressBar
    ) -> Iterator[tuple[int, list[Answer]]]:
        """Each reader batch on a free replica, yielded as it comes back (`Pipeline.read_batch`
        journals it)."""
        self.start()
        prompt = pipe.reader_settings.prompt
        yield from self._run("read", [(prompt, list(c)) for c in chunks], bar)

    def record(self) -> dict[str, Any]:
        s = self.settings
        return {
            "executor": "ray",
            "replicas": s.replicas,
            "address": self.address or "local",
            "gpus_per_replica": self._gpus() if self._ray is not None else s.gpus_per_replica,
            "cpus_per_replica": s.cpus_per_replica,
            "placement": [{"replica": x.number, **(x.place or {})} for x in self.slots],
            "restarts": sum(x.deaths for x in self.slots),
        }

    def close(self) -> None:
        """Close every replica's pipeline (its engine), end the actors, and stop a Ray
        started here."""
        if self._ray is None:
            return
        ray, slots, self.slots = self._ray, self.slots, []
        closing = [x.actor.close.remote() for x in slots if x.alive]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=60)
        for x in slots:
            ray.kill(x.actor)
        stop(ray, self._started_ray)
        self._ray = None

    # -- replicas -------------------------------------------------------------------------------
    def start(self) -> None:
        """Join (or start) Ray and place the replicas; the first call only."""
        if self._ray is not None:
            return
        s = self.settings
        cpus = max(os.cpu_count() or 1, int(s.replicas * s.cpus_per_replica + 0.999))
        ray, self._started_ray = join_or_start("--executor ray", self.address, num_cpus=cpus)
        self._ray = ray
        gpus = self._gpus()
        self._check_resources(ray, gpus)
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
        actor = ray.remote(replica_class()).options(
            num_cpus=self.settings.cpus_per_replica,
            num_gpus=gpus,
            max_restarts=self.settings.max_restarts,
            max_task_retries=0,  # a lost batch is queued again by the driver, to any replica
            runtime_env={"env_vars": env} if env else None,
        )
        self.slots = [
            _Slot(n, actor.remote(self.spec)) for n in range(1, self.settings.replicas + 1)
        ]
        from ragvqa.progress import Spinner
        from ragvqa.startup import since_start

        started = since_start()
        loading = {x.actor.load.remote(): x for x in self.slots}
        with Spinner(f"starting {len(self.slots)} replicas on Ray", enabled=self.progress):
            while loading:
                ready, _ = ray.wait(list(loading), num_returns=1)
                slot = loading.pop(ready[0])
                try:
                    slot.place = self._get(slot, ready[0])
                except ray.exceptions.RayActorError as exc:  # its process died while loading
                    self._reload(slot, exc)
                    loading[slot.actor.load.remote()] = slot
        self.pipe.startup.record("replicas", started, since_start())  # not in the stages' time

    def _reload(self, slot: _Slot, exc: Exception) -> None:
        """A replica's process died while it loaded (Ray's memory monitor, a lost node): it is
        loaded again once Ray has restarted it, within `max_restarts` restarts and
        `PROBES` tries; past them the run stops with one line."""
        slot.probes += 1
        unavailable = isinstance(exc, self._ray.exceptions.ActorUnavailableError)
        if slot.probes >= PROBES or not unavailable:
            raise UserError(f"replica {slot.number} did not start: {first_line(exc)}") from None
        if slot.probes == 1 and self.notify is not None:
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            self.notify(f"replica {slot.number} died while loading ({reason}); it loads again")
        time.sleep(PROBE_WAIT)

    def _gpus(self) -> float:
        """GPUs per replica: the setting, else the reader's tensor-parallel size on a cluster
        with GPUs, else none."""
        if self.settings.gpus_per_replica is not None:
            return self.settings.gpus_per_replica
        if not self._ray.cluster_resources().get("GPU", 0):
            return 0
        reader = (self.pipe.config.get("reader") or {}).get("generator") or {}
        return float(reader.get("tensor_parallel_size") or 1)

    def _check_resources(self, ray: Any, gpus: float) -> None:
        have = ray.cluster_resources()
        n = self.settings.replicas
        for name, each in (("GPU", gpus), ("CPU", self.settings.cpus_per_replica)):
            if each and n * each > have.get(name, 0):
                raise UserError(
                    f"{n} replicas x {each:g} {name} need {n * each:g} {name}s; the Ray cluster "
                    f"has {have.get(name, 0):g} (execution.replicas, execution.{name.lower()}"
                    "s_per_replica)"
                )

    def _get(self, slot: _Slot, ref: Any) -> Any:
        """A replica's result; an error raised in it as one line naming the replica."""
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None) or exc
            raise UserError(f"replica {slot.number}: {first_line(cause)}") from None

    def _run(
        self, method: str, tasks: Sequence[tuple[Any, ...]], bar: ProgressBar
    ) -> Iterator[tuple[int, Any]]:
        """Call `method` with each task's arguments on a free replica, one call per replica at a
        time; yield (task index, result) as they finish. A call lost with its replica goes back
        in the queue, and the replica is asked for its process id (a probe, task index None)
        until it answers again: from a new process when Ray restarted it."""
        ray = self._ray
        pending = deque(range(len(tasks)))
        running: dict[Any, tuple[int | None, _Slot]] = {}
        busy: set[int] = set()
        bar.update(info=self._info())
        while pending or running:
            for slot in self.slots:
                if pending and slot.alive and slot.number not in busy:
                    i = pending.popleft()
                    running[getattr(slot.actor, method).remote(*tasks[i])] = (i, slot)
                    busy.add(slot.number)
            if not running:
                raise UserError(
                    "every replica died (see the notes above); the run resumes from its journal "
                    "when started again"
                )
            ready, _ = ray.wait(list(running), num_returns=1)
            i, slot = running.pop(ready[0])
            busy.discard(slot.number)
            try:
                result = self._get(slot, ready[0])
            except ray.exceptions.RayActorError as exc:
                if i is not None:
                    pending.appendleft(i)
                if self._lost(slot, exc, probe=i is None):
                    running[slot.actor.pid.remote()] = (None, slot)  # back when it answers
                    busy.add(slot.number)
                bar.update(info=self._info())
                continue
            if i is None:
                self._back(slot, result)
            else:
                yield i, result
            bar.update(info=self._info())

    def _lost(self, slot: _Slot, exc: Exception, *, probe: bool) -> bool:
        """A call to a replica failed because its process died or is out of reach; whether to
        probe it (Ray is restarting it) rather than give it up (dead for good, or still out of
        reach after `PROBES` probes)."""
        unavailable = isinstance(exc, self._ray.exceptions.ActorUnavailableError)
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        if not probe:
            slot.probes = 0
            if self.notify is not None:
                self.notify(f"replica {slot.number} lost its batch ({reason}); it is read again")
            return True
        slot.probes += 1
        if unavailable and slot.probes < PROBES:
            time.sleep(PROBE_WAIT)  # restarting: ask again in a moment
            return True
        slot.alive = False
        if self.notify is not None:
            self.notify(
                f"replica {slot.number} is given up ({reason}); its work goes to the others"
            )
        return False

    def _back(self, slot: _Slot, pid: int) -> None:
        """A probed replica answered: count a restart when its process is a new one."""
        place = slot.place if slot.place is not None else {}
        if place.get("pid") == pid:
            return
        slot.deaths += 1
        place["pid"] = pid
        slot.place = place
        if self.notify is not None:
            self.notify(
                f"replica {slot.number} restarted after its process died "
                f"({slot.deaths} of {self.settings.max_restarts} restarts)"
            )

    def _info(self) -> str:
        alive = sum(x.alive for x in self.slots)
        return f"{alive}/{len(self.slots)} replicas"


# The class the replicas' actors run: `Replica` (tests/ray_driver.py puts one that dies once in
# its place, as a process killed from outside would).
REPLICA: list[type[Replica]] = [Replica]


def replica_class() -> type[Replica]:
    return REPLICA[0]


def _add(total: Timings, got: Timings) -> None:
    """Add one shard's stage timings to the run's: seconds summed, cached when all were."""
    for stage, t in got.items():
        mine = total.get(stage, {"seconds": 0.0, "cached": True})
        total[stage] = {  # set, not changed in place: a StageClock notes when
            "seconds": round(mine["seconds"] + t.get("seconds", 0.0), 3),
            "cached": mine["cached"] and bool(t.get("cached", False)),
        }
