"""`Pipeline`: ragvqa's public API, and the one place that knows the order of the stages.

    from ragvqa import Pipeline

    pipe = Pipeline.load("pipelines/default.yaml", overrides=["retrieval.top_k=5"])
    ans = pipe.answer(image="q.jpg", question="When was this church consecrated?")
    ans.text, ans.passages[0].title, ans.passages[0].score, ans.prompt, ans.timings
    answers = pipe.answer_batch(queries)  # batched through every stage

A question goes encode -> search -> rerank (the retrieval stages, `retrieve_batch`) and then
render -> generate -> extract (the reading stages, `read_batch`); `answer_batch` is the two in a
row. Every front end (the CLI's `answer`, the benchmark runner, the demo) calls these methods;
none drives the stages itself.

The benchmark runner hands in a stage cache (`ragvqa.run.cache.StageCache`: encode, search and
rerank outputs keyed by everything they depend on) and a generation journal
(`ragvqa.run.journal.Journal`: answers of finished reader batches, so a killed run redoes at most
one batch); without them every stage is computed. A query that cannot be answered (empty
question, missing or unreadable image) comes back as an `Answer` whose `error` says why; the
others go on.

Cold, `answer_batch` without a journal starts the reader's engine in a background thread before
retrieving (`Components.start_reader`), so the encoder loads, encodes and searches meanwhile;
`startup` says when each component loaded (docs/performance.md, "Cold answer"). The parts are
typed by their Protocols (`ragvqa.parts`) and built by `Components`; the stage cache's lookups
and keys are `ragvqa.cached_stages`, which knows no Pipeline. `variant(...)` makes the same
pipeline with other settings, sharing the loaded parts.

One `Pipeline` may be called from several threads: its calls (`answer`, `answer_batch`,
`retrieve_batch`, `read_batch`, `close`) take turns on one lock, shared with its variants
(they share the engine). A closed pipeline refuses calls in one line. Loading a pipeline
quiets vLLM, transformers and torch as the CLI does (`ragvqa.logs`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragvqa import cached_stages as cached
from ragvqa import logs
from ragvqa.components import Components
from ragvqa.config import load_located
from ragvqa.errors import UserError
from ragvqa.io import digest
from ragvqa.parts import Template
from ragvqa.pipeline_calls import (
    Turns,
    check_image_arg,
    check_index,
    check_queries,
    check_query,
    check_text,
    given_result,
    serialised,
)
from ragvqa.progress import ProgressBar, Spinner
from ragvqa.rerank import in_steps
from ragvqa.resources import resource_dir
from ragvqa.startup import since_start
from ragvqa.types import Answer, ChatPrompt, Generation, Passage, RetrievalResult, VQAQuery
from ragvqa.variants import make_variant

if TYPE_CHECKING:
    from ragvqa.run.cache import StageCache
    from ragvqa.run.journal import Journal

Timings = dict[str, dict[str, Any]]
# reads reader batches elsewhere: (pipeline, batches, bar) -> (batch index, answers) as they finish
ChunkReader = Callable[
    ["Pipeline", Sequence[Sequence[Answer]], ProgressBar], Iterator[tuple[int, list[Answer]]]
]


def default_pipeline() -> Path:
    """The shipped default pipeline file."""
    return resource_dir("pipelines") / "default.yaml"


class Pipeline(Components):
    """A pipeline file's components (built on first use, or passed in) and the stages over them.

    Args:
        config: The resolved pipeline mapping (after `base:` and overrides).
        folder: The folder relative paths in `config` are read against.
        name: The pipeline's name or file, for messages and run records.
        components: Components to use instead of building them from `config` ("encoder",
            "kb", "index", "reader" (or its old name "generator"), "reranker", "prompts",
            "template").
    """

    def __init__(self, *args: Any, **kwargs: Any):
        logs.quiet_by_default()  # as quiet as the CLI, unless set_verbosity chose a level
        super().__init__(*args, **kwargs)
        self._turns = Turns()
        self._turns.members.add(self)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        overrides: Sequence[str] = (),
        *,
        components: Mapping[str, Any] | None = None,
        trust_remote_code: bool = False,
    ) -> Pipeline:
        """The pipeline of a YAML file (default: the shipped default) with `a.b=c` overrides,
        checked against its schema. A name that is not a file but a shipped pipeline's
        ("real-text") loads that one. `trust_remote_code`: the command line's flag."""
        file = Path(path) if path else default_pipeline()
        shipped = resource_dir("pipelines") / f"{file}.yaml"
        if not file.exists() and file.suffix != ".yaml" and shipped.is_file():
            file = shipped
        started = since_start()
        config, origins = load_located(file, tuple(overrides))
        pipe = cls(
            config,
            file.resolve().parent,
            name=str(file),
            components=components,
            origins=origins,
            trust_remote_code=trust_remote_code,
        )
        pipe.startup.record("before_load", 0.0, started)  # interpreter, imports, arguments
        pipe.startup.record("load", started, since_start())
        return pipe

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Shut the reader's engine down (waiting for a call in another thread to finish),
        for this pipeline and its variants; later calls are refused with one line. A second
        close does nothing."""
        with self._turns.lock:
            if not self._turns.closed:
                self._turns.closed = True
                for member in list(self._turns.members):
                    Components.close(member)

    def variant(
        self,
        *overrides: str,
        template: Template | None = None,
        share_lock: bool = True,
        **settings: Any,
    ) -> Pipeline:
        """The same pipeline with other settings: `a.b=c` overrides (as `--set`), the
        shorthands `prompt=` (reader.prompt) and `top_k=` (retrieval.top_k), or a `template`
        object (a draft in no library). It shares the start-up log, every loaded part whose
        settings it keeps (`ragvqa.variants`: a new template reuses the engine) and, unless
        `share_lock` is false, the call lock and closing (the server's variants have one caller,
        its worker, and must not hold up its stop). `variant(prompt="answer/no_retrieval")` is
        the runner's baseline."""
        return make_variant(self, overrides, template, settings, share_lock)

    def with_prompt(self, ref: str) -> Pipeline:
        """The same pipeline with another answer template: `variant(prompt=ref)`."""
        return self.variant(prompt=ref)

    # -- the public API -------------------------------------------------------------------------
    @serialised
    def answer(self, image: str | Path | None, question: str, *, query_id: str = "q") -> Answer:
        """Answer one question about one image; a query that cannot be answered is a
        `UserError` naming the problem."""
        check_image_arg("image", image)
        check_text("question", question)
        check_text("query_id", query_id)
        query = VQAQuery(query_id, question, image_path=None if image is None else str(image))
        answer = self.answer_batch([query])[0]
        if answer.error is not None:
            raise UserError(answer.error)
        return answer

    @serialised
    def answer_batch(
        self,
        queries: Sequence[VQAQuery],
        *,
        evidence: Mapping[str, Sequence[Passage]] | None = None,
        cache: StageCache | None = None,
        journal: Journal | None = None,
        timings: Timings | None = None,
        progress: bool = False,
    ) -> list[Answer]:
        """Answers to `queries`, in order, every stage batched; failed queries carry `error`.
        Without a journal (which may hold every answer) the reader starts while retrieving."""
        check_queries(queries)
        retrieved = self.retrieve_batch(
            queries,
            evidence=evidence,
            cache=cache,
            timings=timings,
            progress=progress,
            start_reader=journal is None,
        )
        return self.read_batch(retrieved, journal=journal, timings=timings, progress=progress)

    @serialised
    def retrieve_batch(
        self,
        queries: Sequence[VQAQuery],
        *,
        evidence: Mapping[str, Sequence[Passage]] | None = None,
        cache: StageCache | None = None,
        timings: Timings | None = None,
        progress: bool = False,
        start_reader: bool = False,
    ) -> list[Answer]:
        """The retrieval stages only (no reader is loaded): answers with `passages` set.

        `retrieval.mode` decides where passages come from: `index` (encode, search, rerank),
        `none` (no passages), or `oracle`, which needs `evidence`: query id -> the passages to
        read instead of retrieving (a benchmark's gold entity; given, it wins in any mode).
        `start_reader`: the reading stages follow, so when a query is valid the reader starts
        now in the background (`Components.start_reader`)."""
        check_queries(queries)
        ids = [q.query_id for q in queries]
        if len(set(ids)) != len(ids):
            raise UserError("query ids must be unique within a batch")
        if self.retrieval_mode == "oracle" and evidence is None:
            raise UserError(
                "retrieval.mode oracle reads the gold entity's passages, which only a benchmark "
                "knows: run it with `ragvqa bench`",
                path=self.name or None,
            )
        timings = {} if timings is None else timings
        failed = {q.query_id: r for q in queries if (r := check_query(q)) is not None}
        valid = [q for q in queries if q.query_id not in failed]
        if start_reader and valid:
            check_index(self)
            self.start_reader()
        results: dict[str, RetrievalResult] = {}
        if evidence is not None:
            results = {
                q.query_id: given_result(q.query_id, evidence.get(q.query_id, ())) for q in valid
            }
        elif valid and self.retrieval_mode == "index":
            valid, ranked = self._retrieve(valid, failed, cache, timings, progress)
            results = {r.query_id: r for r in ranked}
        share = {  # each question's share of the batched stages
            stage: t["seconds"] / max(len(queries), 1)
            for stage, t in timings.items()
            if stage in ("encode", "search", "rerank")
        }
        return [
            Answer(
                q.query_id,
                q.question,
                q.image_path,
                passages=results[q.query_id].passages if q.query_id in results else (),
                template=self.template.ref,
                template_hash=self.template.sha256,
                timings=dict(share),
                error=failed.get(q.query_id),
            )
            for q in queries
        ]

    @serialised
    def read_batch(
        self,
        retrieved: Sequence[Answer],
        *,
        journal: Journal | None = None,
        timings: Timings | None = None,
        progress: bool = False,
        stage: str = "generate",
        read_chunks: ChunkReader | None = None,
    ) -> list[Answer]:
        """The reading stages over answers that hold their passages (from `retrieve_batch`, or
        built by the caller: a baseline's own evidence). Questions are read in fixed batches of
        `reader.batch_size`; with a journal, batches it holds are not generated again.

        `read_chunks` reads the batches elsewhere (the Ray executor's replicas: ragvqa.run.ray):
        given this pipeline, the batches to read and the progress bar, it yields (batch index,
        answers) as batches finish, in any order; each is journalled as it arrives. Default:
        this process reads them in turn."""
        started = time.perf_counter()
        todo = [a for a in retrieved if a.error is None]
        size = self.reader_settings.batch_size
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        done: dict[str, Answer] = {}
        keys = [""] * len(chunks)
        if journal is not None:  # each batch's key: the reader and every prompt it renders
            keys = cached.read_keys(self.reader_key(), self.template, self.reader_settings, chunks)
            batch = {a.query_id: k for c, k in zip(chunks, keys, strict=True) for a in c}
            done = journal.load(batch, todo)
        missing = [
            (c, k)
            for c, k in zip(chunks, keys, strict=True)
            if any(a.query_id not in done for a in c)
        ]
        local = read_chunks is None
        if local and missing and not self.loaded("reader"):  # loads before the bar
            with Spinner("starting reader", enabled=progress):
                _ = self.reader
        with ProgressBar(f"reading ({stage})", len(missing), enabled=progress) as bar:
            finished = (read_chunks or _in_turn)(self, [c for c, _ in missing], bar)
            for i, answers in finished:
                if journal is not None:
                    journal.append(missing[i][1], answers)
                done.update((a.query_id, a) for a in answers)
                bar.advance()
        if timings is not None:
            seconds = round(time.perf_counter() - started, 3)
            timings[stage] = {"seconds": seconds, "cached": not missing}
        return [done.get(a.query_id, a) for a in retrieved]

    # -- the stages ---------------------------------------------------------------------------
    def _retrieve(
        self,
        queries: list[VQAQuery],
        failed: dict[str, str],
        cache: StageCache | None,
        timings: Timings,
        progress: bool,
    ) -> tuple[list[VQAQuery], list[RetrievalResult]]:
        """Encode, search and rerank `queries` through the stage cache: (the queries with a
        readable image, their results). Queries whose image is unreadable go to `failed`."""
        stages = cached.CachedStages(cache, timings, lambda: self.kb)
        vectors, present, key = stages.vectors(
            lambda: cached.encode_key(self.encoder_key(), self.encoder_dtype(), queries),
            lambda: self.encode(queries),
        )
        for q, ok in zip(queries, present, strict=True):
            if not ok and q.image_path is not None:  # text-only queries have none
                failed[q.query_id] = f"unreadable image: {q.image_path}"
        keep = [i for i, q in enumerate(queries) if q.query_id not in failed]
        queries, vectors = [queries[i] for i in keep], vectors[keep]
        ids = [q.query_id for q in queries]
        found, key = stages.results(
            "search",
            lambda: digest([key, ids, self.index_key(), self.top_k, self.one_per_page]),
            lambda: self.search(ids, vectors) if queries else [],
        )
        if not self.config.get("rerank"):
            return queries, found
        search_key = key
        ranked, _ = stages.results(
            "rerank",
            lambda: digest([search_key, self.rerank_key()]),
            lambda: self.rerank(queries, found, vectors, progress=progress),
        )
        return queries, ranked

    def rerank(
        self,
        queries: Sequence[VQAQuery],
        results: Sequence[RetrievalResult],
        vectors: Any | None = None,
        *,
        progress: bool = False,
    ) -> list[RetrievalResult]:
        """The results reranked (as they are without a reranker); `vectors`: the queries'
        vectors from the encode stage, which the reranker may use instead of encoding."""
        if self.reranker is None:
            return list(results)
        return in_steps(self.reranker, queries, results, self.top_k, vectors, progress=progress)

    def generate(self, prompts: Sequence[ChatPrompt]) -> list[Generation]:
        return self.reader.generate(list(prompts), self.reader_settings.sampling)

    def extract(self, raw: str) -> str:
        return self.template.extract_answer(raw)

    # -- the stages, batched and cached ---------------------------------------------------------
    def _read_chunk(self, chunk: Sequence[Answer]) -> list[Answer]:
        prompts = [self.render(a.question, a.image, a.passages) for a in chunk]
        started = time.perf_counter()
        outputs = self.generate(prompts)
        seconds = (time.perf_counter() - started) / max(len(chunk), 1)
        return [
            replace(
                a,
                text=self.extract(out.text),
                raw_output=out.text,
                evidence=a.passages[: self.evidence_count(prompt, a.passages)],
                prompt=prompt,
                template=prompt.template,
                template_hash=prompt.template_hash,
                model=out.model,
                timings={**a.timings, "generate": seconds},
            )
            for a, prompt, out in zip(chunk, prompts, outputs, strict=True)
        ]


def _in_turn(
    pipe: Pipeline, chunks: Sequence[Sequence[Answer]], bar: ProgressBar
) -> Iterator[tuple[int, list[Answer]]]:
    """Read the batches in this process, one after another (`read_batch`'s default)."""
    for i, chunk in enumerate(chunks):
        yield i, pipe._read_chunk(chunk)
