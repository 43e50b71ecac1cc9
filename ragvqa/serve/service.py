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
components (`Pipeline(..., components=...)`), so nothing is loaded twice.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ragvqa.cli.answer import validate_question
from ragvqa.config import merge
from ragvqa.pipeline import Pipeline
from ragvqa.prompts import PromptLibrary, PromptTemplate
from ragvqa.serve import playground
from ragvqa.serve.batcher import Batcher, Job
from ragvqa.serve.errors import RequestError
from ragvqa.serve.uploads import UploadStore
from ragvqa.types import Answer, VQAQuery

MAX_QUESTION_CHARS = 2000
MAX_TOP_K = 100
VARIANTS = 16  # pipeline variants (template, top_k) kept
PAGE_IMAGES = 4096  # pages whose image list is remembered for thumbnails
THUMBNAILS_PER_PASSAGE = 3


@dataclass(frozen=True)
class Settings:
    """The server's knobs (the `ragvqa serve` options)."""

    window_ms: float = 10.0
    max_batch: int = 32
    max_request_bytes: int = 20 * 2**20
    cache_size: int = 256
    can_save: bool = False  # whether the playground may write new template versions


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
    names = (*retrieval[pipe.retrieval_mode], "reranker", "generator", "prompts")
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
        self.batcher.stop()

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

    def submit_reread(self, query_id: str, template: PromptTemplate) -> Job:
        """Queue a cached question for reading again with `template` (no retrieval)."""
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
        return self.batcher.submit(("read", template, None), fresh)

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

    def draft(self, base: str | None, text: str) -> PromptTemplate:
        return playground.draft(self.library, base or self.default_template.ref, text)

    def save_template(self, base: str, text: str, note: str) -> PromptTemplate:
        if not self.settings.can_save:
            raise RequestError(
                "saving templates needs a prompts folder of yours: start the server with "
                "--prompts DIR (in a checkout: --prompts prompts)",
                status=403,
            )
        with self._save_lock:
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
        kind, template, top_k = key  # type: ignore[misc]
        pipe = self._variant(template, top_k)
        if kind == "read":
            return pipe.read_batch(list(items))
        answers = pipe.answer_batch(list(items))
        results: list[Any] = []
        for answer in answers:
            if answer.ok:
                self._remember(answer)
                results.append(answer)
            else:
                error = self.uploads.client_name(answer.error or "not answered", answer.image)
                self.uploads.remove(answer.image)
                results.append(RequestError(error))
        return results

    def _variant(self, template: PromptTemplate, top_k: int | None) -> Pipeline:
        """The pipeline with this template and top_k, sharing the loaded components."""
        key = (template.ref, template.sha256, top_k)
        if key not in self._variants:
            change: dict[str, Any] = {"reader": {"prompt": template.ref}}
            if top_k is not None:
                change["retrieval"] = {"top_k": top_k}
            self._variants[key] = Pipeline(
                merge(self.pipe.config, change),
                self.pipe.folder,
                name=self.pipe.name,
                components={**self.components, "template": template},
            )
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
