"""`BenchRunner`: one benchmark through one pipeline into a run directory, resumable and scored.

The runner loads and checks the questions through the benchmark's plug-in, answers them with
`Pipeline.answer_batch` (its stage cache and generation journal handed in), scores them with
the plug-in's scorer and writes the run directory (see `ragvqa.run.records`). A question that
cannot be answered (empty question, missing, unreadable or oversized image) is recorded as
failed with its reason, scores 0 and is counted; the run goes on. Every file is written
atomically, and `predictions.jsonl` and `metrics.json` only once everything is done.

The run directory is guarded (`ragvqa.run.folder`): an output that is one of the inputs, or a
run directory inside an input folder (the benchmark's files and images, the pipeline file, its
models, KB and index: `BenchRunner.inputs`, recorded in `config.yaml`), is refused, the
directory is locked against a second process, a directory holding a run of another
configuration is refused unless `overwrite`, and nothing in it is written before the questions
have been read and checked. A resumed run reuses only what was produced from the same inputs:
the stage cache and the generation journal are keyed on the question texts, the images' bytes,
the rendered prompts and the models' weights (`ragvqa.cached_stages`).

A retrieval-only run (`retrieval_only=True`, or a benchmark without an official scorer) stops
after the retrieval stages: recall@K without loading a reader.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ragvqa.benchmarks import Benchmark, get_benchmark
from ragvqa.errors import UserError
from ragvqa.eval.retrieval_metrics import entity_recall, pseudo_recall, recall_ks
from ragvqa.io import atomic_writer, check_output_folder, write_json, write_jsonl
from ragvqa.logs import note
from ragvqa.pipeline import Pipeline
from ragvqa.resources import cache_root
from ragvqa.run import records
from ragvqa.run.cache import StageCache
from ragvqa.run.executor import Executor, LocalExecutor, make_executor
from ragvqa.run.folder import (
    INPUTS,
    RESULTS,
    RunFolder,
    check_not_inside,
    input_label,
    pipeline_inputs,
)
from ragvqa.run.journal import Journal
from ragvqa.run.records import RunRecord
from ragvqa.startup import StageClock, with_startup
from ragvqa.types import (
    Answer,
    BenchmarkExample,
    MetricResult,
    Passage,
    Prediction,
    RetrievalResult,
    RetrievedPassage,
)

BATCHED = ("encode", "search", "rerank")  # stages timed once per batch, shared by its questions


@dataclass(frozen=True)
class BenchSpec:
    """Which files a run reads: `files` maps the benchmark's file roles (questions, qtypes,
    withkb, bem, ...) to paths; `images` maps image roots (oven, landmarks, ...) to folders."""

    benchmark: str
    files: Mapping[str, str]
    images: Mapping[str, str] = field(default_factory=dict)
    limit: int | None = None
    baselines: bool = False
    retrieval_only: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "files": dict(self.files), "images": dict(self.images)}


def load_examples(benchmark: Benchmark, spec: BenchSpec) -> list[BenchmarkExample]:
    """The benchmark's questions (the first `limit`), with their image files resolved."""
    examples = benchmark.load(spec.files)
    if spec.limit is not None:
        examples = examples[: spec.limit]
    if not examples:
        raise UserError("no questions to run", path=spec.files.get("questions"))
    if spec.images:
        examples, _ = benchmark.resolve_images(examples, spec.images)
    return examples


class BenchRunner:
    """Runs one benchmark through one pipeline into the run directory `out`."""

    def __init__(
        self,
        pipeline: Pipeline,
        spec: BenchSpec,
        out: str | Path,
        *,
        cache: str | Path | None = None,
        use_cache: bool = True,
        progress: bool = True,
        resolved_config: dict[str, Any] | None = None,
        overwrite: bool = False,
        notify: Callable[[str], None] | None = None,
    ):
        """`overwrite` replaces a run of another configuration in `out` (else refused);
        `notify` is told, in one line, when that happens."""
        self.pipeline, self.spec, self.out = pipeline, spec, Path(out)
        self.benchmark = get_benchmark(spec.benchmark)
        self.cache = StageCache(Path(cache) if cache else cache_root(), use_cache)
        self.progress = progress
        self.resolved_config = resolved_config or pipeline.config
        self.overwrite, self.notify = overwrite, notify
        self.timings: dict[str, dict[str, Any]] = StageClock()  # metrics: with_startup()
        self.earlier = records.EarlierTimings()  # what the run folder recorded before (run())
        self.executor: Executor = LocalExecutor()  # the pipeline's `execution` (run())

    @property
    def retrieval_only(self) -> bool:
        return self.spec.retrieval_only or not self.benchmark.scores_answers

    def inputs(self) -> dict[str, str]:
        """Every file and folder the run reads, by dotted key, resolved: the benchmark's files
        and image folders, the pipeline file, and the models, KB (and its source) and index
        its stages read (`ragvqa.run.folder.pipeline_inputs`)."""
        spec, p = self.spec, self.pipeline
        out = {f"benchmark.files.{k}": os.path.abspath(v) for k, v in spec.files.items() if v}
        out |= {f"benchmark.images.{k}": os.path.abspath(v) for k, v in spec.images.items() if v}
        if p.name and Path(p.name).is_file():
            out["pipeline.file"] = os.path.abspath(p.name)

        def resolve(value: str) -> str | None:
            try:
                return p.path(value)
            except UserError:  # ${RAGVQA_DATA} unset: the stage that reads it says so
                return None

        reader = not self.retrieval_only
        return out | pipeline_inputs(
            self.resolved_config, resolve, reader=reader, kb=reader and spec.baselines
        )

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        inputs = self.inputs()
        named = {input_label(key): path for key, path in inputs.items()}
        outputs = (*RESULTS, records.CONFIG, records.WORK)
        check_output_folder(self.out, outputs, named, option="--out")
        check_not_inside({"--out": self.out}, named)
        with RunFolder(self.out) as folder:
            examples = load_examples(self.benchmark, self.spec)  # bad input stops here
            config = {
                "pipeline": self.resolved_config,
                "benchmark": self.spec.to_json(),
                INPUTS: inputs,  # where it read them (left out when runs are compared)
            }
            changes = folder.check(config, overwrite=self.overwrite)
            folder.commit(config, replace=bool(changes))
            if changes and self.notify is not None:
                self.notify(
                    f"--overwrite: {self.out} held another run ({'; '.join(changes)}); "
                    "its results are replaced"
                )
            # what this run recorded when it computed its stages: a re-run of a finished run
            # keeps those times for the stages it takes from the cache (`records.keep_measured`)
            self.earlier = records.EarlierTimings.read(self.out)
            self.executor = make_executor(
                self.pipeline,
                cache=self.cache,
                reader=not self.retrieval_only,
                notify=self.notify or note,
                progress=self.progress,
            )
            try:
                return self._run(examples, started)
            finally:
                self.executor.close()

    def _run(self, examples: list[BenchmarkExample], started: float) -> dict[str, Any]:
        queries = [e.to_query() for e in examples]
        p, work = self.pipeline, self.out / records.WORK
        cache, timings, progress = self.cache, self.timings, self.progress
        baselines: dict[str, list[Answer]] = {}
        gold = self._gold(examples) if p.retrieval_mode == "oracle" else None
        answers = self.executor.retrieve(
            p, queries, evidence=gold, cache=cache, timings=timings, progress=progress
        )
        if not self.retrieval_only:
            answers = p.read_batch(
                answers,
                journal=Journal(work / "answers.jsonl"),
                timings=timings,
                progress=progress,
                read_chunks=self.executor.read_chunks,
            )
            if self.spec.baselines:
                baselines = self._baselines(examples, answers)
        self.timings["total"] = {"seconds": round(time.perf_counter() - started, 3)}
        return self._finish(examples, answers, baselines)

    def _baselines(
        self, examples: Sequence[BenchmarkExample], answers: Sequence[Answer]
    ) -> dict[str, list[Answer]]:
        """The same questions read with no evidence, and with the gold entity's passages."""
        p, work = self.pipeline, self.out / records.WORK
        gold = self._gold(examples)
        oracle = [
            replace(
                a,
                passages=tuple(RetrievedPassage(x, 1.0, i) for i, x in enumerate(gold[a.query_id])),
            )
            for a in answers
        ]
        bare = [replace(a, passages=()) for a in answers]
        return {
            "no_retrieval": p.with_prompt("answer/no_retrieval").read_batch(
                bare,
                journal=Journal(work / "no_retrieval.jsonl"),
                timings=self.timings,
                progress=self.progress,
                stage="generate:no_retrieval",
                read_chunks=self.executor.read_chunks,
            ),
            "oracle_entity": p.read_batch(
                oracle,
                journal=Journal(work / "oracle_entity.jsonl"),
                timings=self.timings,
                progress=self.progress,
                stage="generate:oracle_entity",
                read_chunks=self.executor.read_chunks,
            ),
        }

    def _gold(self, examples: Sequence[BenchmarkExample]) -> dict[str, list[Passage]]:
        """Each question's gold entity's passages (the top `reader.passages` of its page)."""
        p = self.pipeline
        n = p.reader_settings.passages
        return {e.example_id: _gold_passages(p.kb, e)[:n] for e in examples}

    def _score(
        self, examples: Sequence[BenchmarkExample], answers: Sequence[Answer]
    ) -> MetricResult | None:
        if self.retrieval_only:
            return None
        predictions = [
            Prediction(e.example_id, a.text) for e, a in zip(examples, answers, strict=True)
        ]
        return self.benchmark.score(predictions, examples, self.spec.files)

    def _finish(
        self,
        examples: Sequence[BenchmarkExample],
        answers: Sequence[Answer],
        baselines: dict[str, list[Answer]],
    ) -> dict[str, Any]:
        answers = self.earlier.kept_shares(answers, self.timings, BATCHED)
        scored = self._score(examples, answers)
        per_example = {s.example_id: s for s in scored.per_example} if scored else {}
        rows = [
            RunRecord.of(e, a, per_example.get(e.example_id))
            for e, a in zip(examples, answers, strict=True)
        ]
        write_jsonl(self.out / records.PREDICTIONS, (r.to_json() for r in rows))
        with atomic_writer(self.out / records.TREC) as fh:
            for a in answers:
                for rp in a.passages:
                    fh.write(
                        f"{a.query_id} Q0 {rp.passage_id} {rp.rank + 1} {rp.score:.6f} ragvqa\n"
                    )
        results = [RetrievalResult(a.query_id, a.passages) for a in answers]
        failed = {a.query_id: a.error for a in answers if a.error is not None}
        mode = self.pipeline.retrieval_mode
        metrics: dict[str, Any] = {
            "benchmark": self.spec.benchmark,
            "pipeline": self.pipeline.name,
            "template": None if self.retrieval_only else self.pipeline.template.ref,
            "retrieval_only": self.retrieval_only,
            "retrieval_mode": mode,
            # the benchmark's headline figures, also at the top for scripts
            **(_headline(self.benchmark.headline, scored.metrics) if scored else {}),
            "official": scored.metrics if scored else None,
        }
        if mode == "index":  # no retrieval, or the gold passages given: nothing to judge
            ks = recall_ks(self.pipeline.top_k)  # recall@K up to the retrieval depth only
            metrics["retrieval"] = {
                "entity_recall": entity_recall(results, examples, ks),
                "pseudo_recall": pseudo_recall(results, examples, ks),
            }
        metrics |= {
            "counts": {
                "questions": len(examples),
                "answered": len(examples) - len(failed),
                "failed": len(failed),
                "failed_reasons": dict(Counter(r.split(": ")[0] for r in failed.values())),
                "failed_examples": [
                    {"data_id": k, "reason": v} for k, v in list(failed.items())[:20]
                ],
            },
            "timings": records.keep_measured(
                with_startup(self.timings, self.pipeline.startup), self.earlier.stages
            ),
            "execution": self.executor.record(),
            "baselines": {
                name: self._score(examples, got).metrics for name, got in baselines.items()
            },
        }
        write_json(self.out / records.ENVIRONMENT, records.environment())
        write_json(self.out / records.METRICS, metrics)
        return metrics


def _headline(keys: Sequence[str], official: Mapping[str, Any]) -> dict[str, Any]:
    """{"final_score": 41.2, "unseen_question_score": 40.1, ...} from dotted keys into the
    official metrics ("unseen_question_score.score" is shown as "unseen_question_score")."""
    out = {}
    for key in keys:
        value: Any = official
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        out[key.split(".")[0]] = value
    return out


def _gold_passages(kb: Any, example: BenchmarkExample) -> list[Passage]:
    """The gold entity's passages (E-VQA: by page URL; InfoSeek: by Wikidata id)."""
    for gold in example.entity_ids:
        passages = kb.page_passages(gold)
        if passages:
            return passages
        page = kb.page_of_entity(gold)
        if page:
            return kb.page_passages(page)
    return []
