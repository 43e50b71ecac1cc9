"""What the server does, without HTTP: one loaded pipeline, the batching worker in front of it,
the cache of recent retrievals, the uploaded images and the prompt templates.

Every request becomes a job for the batching worker (`ragvqa.serve.batcher`): an "answer" job
runs `Pipeline.answer_batch` with the jobs of its group (same template, same top_k), a "read"
job re-reads a cached question with another template through `Pipeline.read_batch` (no
re-encoding, no search). The retrieval of every answered question is kept, keyed by its query
id, for the last `cache_size` questions: the playground's re-answers read from it.

Templates are resolved from the server's own `PromptLibrary` (the `--prompts` folder, else the
shipped templates), which is reloaded when the playground saves a new version. A template or a
top_k other than the pipeline's runs on a variant of the pipeline that shares its loaded
components (`Pipeline.variant`), so nothing is loaded twice.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.pipeline import Pipeline
from ragvqa.prompts import PromptLibrary, PromptTemplate, render_bounds
from ragvqa.questions import validate_question
from ragvqa.serve import playground
from ragvqa.serve.batcher import Batcher, Job
from ragvqa.serve.errors import RequestError
from ragvqa.serve.settings import Settings
from ragvqa.serve.uploads import UploadStore
from ragvqa.types import Answer, VQAQuery

MAX_QUESTION_CHARS = 2000
MAX_TOP_K = 100
VARIANTS = 16  # pipeline variants (template, top_k) kept
PAGE_IMAGES = 4096  # pages whose image list is remembered for thumbnails
THUMBNAILS_PER_PASSAGE = 3


@dataclass(frozen=True)
class Cached:
    """One answered question kept for the playground: its first answer (which holds the
    retrieved passages) and the image files shown as each passage's thumbnails."""

    answer: Answer
    images: tuple[tuple[str, ...], ...]


def load_components(pipe: Pipeline) -> dict[str, Any]:
    """Load every component the pipeline's mode needs, now (in the calling thread: vLLM starts
    its engine there), and return them to share with variants of the pipeline."""
    retrieval = {"index": ("encoder", "kb", "index"), "none": (), "oracle": ("kb",)}
    names = (*retrieval[pipe.retrieval_mode], "reranker", "reader", "prompts")
    return {name: getattr(pipe, name) for name in names}


def needs_image(pipe: Pipeline) -> bool:
    """Whether a question needs an image: the reader is shown one, or the retriever encodes
    one (any encoder but a text encoder)."""
    if pipe.reader_settings.images:
        return True
    if pipe.retrieval_mode != "index":
        return False
    return (pipe.config.get("encoder") or {}).get("type") != "text"


class Service:
    """The server's state and operations (thread-safe; the pipeline is used by the worker
    thread only)."""

    def __init__(self, pipe: Pipeline, settings: Settings, upload_dir: str | Path):
        if pipe.retrieval_mode == "oracle":
            raise RequestError(
                "retrieval.mode oracle reads a benchmark's gold passages: serve a pipeline "
                "with retrieval.mode index or none"
            )
        self.pipe, self.settings = pipe, settings
        self.components = load_components(pipe)
        self.library: PromptLibrary = self.components["prompts"]
        self.default_template = playground.check_answer_template(pipe.template)
        self.uploads = UploadStore(upload_dir, settings.max_request_bytes)
        self.needs_image = needs_image(pipe)
        self.batcher = Batcher(
            self._run, window_s=settings.window_ms / 1000, max_batch=settings.max_batch
        )
        self.started = time.time()
        self._cache: OrderedDict[str, Cached] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._variants: OrderedDict[Hashable, Pipeline] = OrderedDict()
        self._page_images: dict[str, tuple[str, ...]] = {}

    def start(self) -> None:
        self.batcher.start()

    def stop(self) -> None:
        """Stop the worker: queued questions get a 503, a call in progress is waited for at
        most `shutdown_s` (the server stops on time even while the engine is busy)."""
        stopping = RequestError("the server is stopping", status=503)
        self.batcher.stop(self.settings.shutdown_s, cancel=stopping)

    def bounds(self) -> AbstractContextManager[None]:
        """The bounds of every render of the server (drafts, templates, the worker's)."""
        return render_bounds(self.settings.max_prompt_chars, self.settings.render_seconds)

    # -- requests -----------------------------------------------------------------------------
    @staticmethod
    def new_query_id() -> str:
        return f"q-{secrets.token_hex(6)}"

    def question(self, text: str | None) -> str:
        if text is None:
            raise RequestError("missing question")
        if len(text) > MAX_QUESTION_CHARS:
            raise RequestError(f"question longer than {MAX_QUESTION_CHARS:,} characters")
        return validate_question(text)

    def template(self, ref: str | None) -> PromptTemplate:
        """An answer template of the library by `id@version` (or id: the latest); None: the
        pipeline's."""
        if not ref:
            return self.default_template
        with self.bounds():
            return playground.check_answer_template(self.library.get(ref))

    def top_k(self, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_TOP_K:
            raise RequestError(f"top_k must be between 1 and {MAX_TOP_K}")
        return value

    def submit_answer(
        self,
        query_id: str,
        question: str,
        image: str | None,
        template: PromptTemplate,
        top_k: int | None,
    ) -> Job:
        """Queue one question (its image already stored under `query_id`)."""
        if image is None and self.needs_image:
            raise RequestError("missing image: send an 'image' file or an 'image_url' data URI")
        query = VQAQuery(query_id, question, image_path=image)
        return self.batcher.submit(("answer", template, top_k or self.pipe.top_k), query)

    def submit_reread(self, query_id: str, template: PromptTemplate, *, draft: bool = False) -> Job:
        """Queue a cached question for reading again with `template` (no retrieval); a `draft`
        (a client's edit, checked by `draft`) is also counted in tokens before it is read."""
        cached = self.cached(query_id)
        fresh = replace(
            cached.answer,
            text="",
            raw_output=None,
            evidence=(),
            prompt=None,
            model="",
            timings={},
        )
        return self.batcher.submit(("draft" if draft else "read", template, None), fresh)

    def cached(self, query_id: str) -> Cached:
        with self._cache_lock:
            found = self._cache.get(query_id)
        if found is None:
            raise RequestError(
                f"unknown query id {query_id} (the server keeps the last "
                f"{self.settings.cache_size} questions)",
                status=404,
            )
        return found

    def draft(self, base: str | None, text: str, query_id: str | None = None) -> PromptTemplate:
        """A client's edited template, checked before it may reach the worker: it parses, its
        sample render and its render of the question `query_id` (as the reader would be
        prompted) stay within the server's bounds (`bounds`: characters and time; 413 or 400).
        Runs in a request's thread, so a bad draft costs its own client's time only."""
        with self.bounds():
            template = playground.draft(self.library, base or self.default_template.ref, text)
            if query_id is not None:
                answer = self.cached(query_id).answer
                settings = self.pipe.reader_settings
                with playground.client_errors():
                    template.render(
                        question=answer.question,
                        passages=list(answer.passages[: settings.passages]),
                        image=answer.image if settings.images else None,
                    )
        return template

    def save_template(self, base: str, text: str, note: str) -> PromptTemplate:
        if not self.settings.can_save:
            raise RequestError(
                "saving templates needs a prompts folder of yours: start the server with "
                "--prompts DIR (in a checkout: --prompts prompts)",
                status=403,
            )
        with self._save_lock, self.bounds():
            saved = playground.save(self.library, base, text, note)
            self.library = PromptLibrary(self.library.root)
        return self.library.get(saved.ref)

    # -- read-only views ---------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        with self._cache_lock:
            cached = len(self._cache)
        return {
            "status": "ok",
            "pipeline": self.pipe.name,
            "uptime_s": round(time.time() - self.started, 1),
            "queued": self.batcher.queued,
            "cached_questions": cached,
            **self.batcher.stats.to_json(),
        }

    def pipeline_info(self) -> dict[str, Any]:
        library, lock = self.library, self.library.lock()
        templates = [
            {
                "ref": t.ref,
                "sha256": t.sha256,
                "description": t.description,
                "inputs": list(t.inputs),
                "locked": t.ref in lock,
                "answer": "candidates" not in t.inputs,
            }
            for t in (library.get(ref) for ref in library.refs())
        ]
        return {
            "name": self.pipe.name,
            "config": json.loads(json.dumps(self.pipe.config, default=str)),
            "retrieval_mode": self.pipe.retrieval_mode,
            "top_k": self.pipe.top_k,
            "max_top_k": MAX_TOP_K,
            "needs_image": self.needs_image,
            "template": {"ref": self.default_template.ref, "sha256": self.default_template.sha256},
            "templates": templates,
            "prompts_folder": str(library.root),
            "can_save": self.settings.can_save,
            "batching": {
                "window_ms": self.settings.window_ms,
                "max_batch": self.settings.max_batch,
            },
            "cache_size": self.settings.cache_size,
            "max_request_bytes": self.settings.max_request_bytes,
        }

    def template_file(self, ref: str) -> dict[str, Any]:
        template = self.library.get(ref)
        return {
            "ref": template.ref,
            "sha256": template.sha256,
            "text": template.path.read_text(encoding="utf-8"),
            "locked": template.ref in self.library.lock(),
        }

    def thumbnail_file(self, query_id: str, rank: int, index: int = 0) -> str:
        images = self.cached(query_id).images
        if not 0 <= rank < len(images) or not 0 <= index < len(images[rank]):
            raise RequestError(f"no image {index} for passage {rank} of {query_id}", status=404)
        return images[rank][index]

    # -- the worker thread -------------------------------------------------------------------
    def _run(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        with self.bounds():
            return self._run_bounded(key, items)

    def _run_bounded(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        kind, template, top_k = key  # type: ignore[misc]
        pipe = self._variant(template, top_k)
        if kind == "draft":  # a client's edit: its own text must fit the reader's context
            refused = {a.query_id: e for a in items if (e := _check(_too_many_tokens, pipe, a))}
            read = iter(_read(pipe, [a for a in items if a.query_id not in refused]))
            return [refused.get(a.query_id) or next(read) for a in items]
        if kind == "read":
            return _read(pipe, items)
        retrieved = pipe.retrieve_batch(list(items), start_reader=True)  # as answer_batch
        results: list[Any] = []
        for query, answer in zip(items, _read(pipe, retrieved), strict=True):
            if isinstance(answer, Answer) and answer.ok:
                self._remember(answer)
                results.append(answer)
                continue
            if isinstance(answer, Answer):
                message = self.uploads.client_name(answer.error or "not answered", answer.image)
                answer = RequestError(message)
            self.uploads.remove(query.image_path)
            results.append(answer)
        return results

    def _variant(self, template: PromptTemplate, top_k: int | None) -> Pipeline:
        """The pipeline with this template and top_k (`Pipeline.variant`: it shares the loaded
        components), kept for the next requests of the same kind. Its calls do not take the
        pipeline's lock: the worker is their only caller, and the server's stop must not wait
        for a call in progress (the engine is closed under it, as `shutdown_s` promises)."""
        key = (template.ref, template.sha256, top_k)
        if key not in self._variants:
            settings = {} if top_k is None else {"top_k": top_k}
            variant = self.pipe.variant(template=template, share_lock=False, **settings)
            self._variants[key] = variant
            while len(self._variants) > VARIANTS:
                self._variants.popitem(last=False)
        self._variants.move_to_end(key)
        return self._variants[key]

    def _remember(self, answer: Answer) -> None:
        entry = Cached(answer, tuple(self._images(rp) for rp in answer.passages))
        with self._cache_lock:
            self._cache[answer.query_id] = entry
            evicted = []
            while len(self._cache) > self.settings.cache_size:
                evicted.append(self._cache.popitem(last=False)[1])
        for old in evicted:
            self.uploads.remove(old.answer.image)

    def _images(self, passage: Any) -> tuple[str, ...]:
        """A retrieved passage's images, else its page's first images (a KB keeps a page's
        images with its lead section)."""
        images = tuple(passage.passage.image_paths)
        kb = self.components.get("kb")
        if not images and kb is not None and passage.page_id:
            if passage.page_id not in self._page_images:
                if len(self._page_images) >= PAGE_IMAGES:
                    self._page_images.clear()
                found = (p.image_paths for p in kb.page_passages(passage.page_id, limit=64))
                self._page_images[passage.page_id] = next((i for i in found if i), ())
            images = self._page_images[passage.page_id]
        return tuple(images[:THUMBNAILS_PER_PASSAGE])


def _read(pipe: Pipeline, answers: Sequence[Answer]) -> list[Answer | RequestError]:
    """`read_batch` of a group; when a question of it cannot be read (its prompt is over the
    server's bounds, or does not fit the reader), each is read on its own, so that only that
    question fails (with its problem, without the server's paths, and the bound's status)."""
    try:
        return list(pipe.read_batch(list(answers)))
    except UserError as exc:
        if len(answers) == 1:
            return [RequestError(exc.problem, getattr(exc, "status", 400))]
    return [_check(lambda a: pipe.read_batch([a])[0], a) for a in answers]


def _check(function: Any, *args: Any) -> Any:
    """`function(*args)`, or the `UserError` it raised as a `RequestError` for its client."""
    try:
        return function(*args)
    except UserError as exc:
        return RequestError(exc.problem, getattr(exc, "status", 400))


def _too_many_tokens(pipe: Pipeline, answer: Answer) -> RequestError | None:
    """Where the reader can count tokens: a draft whose prompt without any evidence text does
    not fit the reader's context (less `max_tokens`) is refused after one count, before the
    context fitting would tokenise it again and again."""
    counter, context = pipe.token_counter
    if counter is None:
        return None
    settings = pipe.reader_settings
    shown = answer.passages[: settings.passages]
    bare = [replace(p, passage=replace(p.passage, text="")) for p in shown]
    image = answer.image if settings.images else None
    prompt = pipe.template.render(question=answer.question, passages=bare, image=image)
    tokens, budget = counter(prompt), context - settings.sampling.max_tokens
    if tokens <= budget:
        return None
    return RequestError(
        f"template {prompt.template} needs {tokens:,} tokens before any evidence; the reader's "
        f"context leaves {budget:,} (context {context:,} - max_tokens "
        f"{settings.sampling.max_tokens:,})",
        status=413,
    )
