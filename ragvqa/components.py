"""A pipeline's components, built from its YAML on first use (or passed in).

`Components` reads the sections of a pipeline file (see pipelines/README.md): `encoder`, `kb`,
`index`, `retrieval`, `rerank` and `reader`, checked first against their schema
(`ragvqa.schema`, documented in docs/pipeline-reference.md). Relative paths are read against
the file's folder; `${RAGVQA_CACHE}` is the cache root (env `RAGVQA_CACHE`, default
`~/.cache/ragvqa`). A model that is not a local path is a hub id.

Components are built on first use, so `ragvqa answer` on a cached index never loads a KB
builder, and a run that only re-renders prompts never loads the encoder. A KB or index that is
missing is built on first use when the file says where from (`kb.source`); otherwise the error
says which path is missing and how to build it. A component given to the constructor
(`components={"reader": r}`; `"generator"` is the old name) is used as it is and never built.
`start_reader` starts a vLLM reader in a background thread; `startup` records when each
component loaded.

Each part is typed by its Protocol (`ragvqa.parts`). The settings are read from the validated
`PipelineConfig` (`self.settings`): its defaults are the only ones. A reranker's class says
which of the pipeline's parts its constructor takes (`needs`), so no type is special-cased here.

The identities of the components (`encoder_key`, `index_key`, `rerank_key`, `reader_key`) are
what stage caches and generation journals are keyed by. `ragvqa.pipeline.Pipeline` runs the
stages over these components.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

from ragvqa import cached_stages
from ragvqa.config import Origins, build
from ragvqa.errors import UserError
from ragvqa.index.manifest import MANIFEST as INDEX_MANIFEST
from ragvqa.index.manifest import checkpoint_identity
from ragvqa.kb.store import MANIFEST as KB_MANIFEST
from ragvqa.kb.store import KBStore
from ragvqa.locations import Locations
from ragvqa.logs import note
from ragvqa.models.checkpoint import parse_dtype, resolve_device_dtype
from ragvqa.models.encoders import check_kind
from ragvqa.parts import Index, QueryEncoder, Reader, Reranker, Template
from ragvqa.pipeline_calls import check_settings
from ragvqa.prompts import PromptLibrary
from ragvqa.reader_settings import ReaderSettings, reader_settings  # noqa: F401 (re-exported)
from ragvqa.readers.context import fit_prompt, reader_token_counter
from ragvqa.registry import READERS, RERANKERS
from ragvqa.schema import PipelineConfig, validate_pipeline
from ragvqa.schema.components import with_remote_code
from ragvqa.schema.sections import (
    EncoderSection,
    IndexSection,
    ReaderSection,
    RetrievalSection,
)
from ragvqa.startup import Background, StartupLog, since_start
from ragvqa.types import ChatPrompt, RetrievalResult, RetrievedPassage, VQAQuery

COMPONENTS = ("encoder", "kb", "index", "reader", "reranker", "prompts", "template")
# the parts' old names, still taken: `components={"generator": g}` is the reader
KEPT_AS = {"generator": "reader"}


class Components:
    """The components of one pipeline file, built lazily (or given), and their identities.

    The configuration is checked against the schema here, before anything is built: a bad key
    is a one-line `UserError` naming the file that set it (`origins`, from
    `ragvqa.config.load_located`). `trust_remote_code` is the command line's
    `--trust-remote-code`: it lets a reader that can run a model repository's code do so (a
    file alone cannot)."""

    def __init__(
        self,
        config: dict[str, Any],
        folder: Path,
        *,
        name: str = "",
        components: Mapping[str, Any] | None = None,
        origins: Origins | None = None,
        trust_remote_code: bool = False,
    ):
        given = {KEPT_AS.get(k, k): v for k, v in (components or {}).items()}
        if unknown := set(components or {}) - {*COMPONENTS, "generator"}:
            raise ValueError(f"unknown components {sorted(unknown)}")
        vars(self).update(given)  # the cached properties find them (a patched property wins)
        self._given = frozenset(given)  # the caller owns these: close() leaves them open
        self.startup = StartupLog()
        self.settings: PipelineConfig = validate_pipeline(
            config, origins=origins, name=name or None, trust_remote_code=trust_remote_code
        )
        self._origins, self._trust_remote_code = origins, trust_remote_code
        if trust_remote_code:
            config = with_remote_code(config)
        self.config, self.folder, self.name = config, folder, name or config.get("name", "")
        self.where = Locations(folder, self.name)
        self.reader_settings = reader_settings(self.settings.reader or ReaderSection())
        retrieval = self.settings.retrieval or RetrievalSection()
        self.top_k, self.one_per_page = retrieval.top_k, retrieval.one_per_page
        self.retrieval_mode = retrieval.mode

    def loaded(self, part: str) -> bool:
        """Whether `part` ("encoder", "reader", ...) is built (or was given)."""
        return KEPT_AS.get(part, part) in vars(self)

    # -- settings ----------------------------------------------------------------------------
    def path(self, value: str) -> str:
        """A path from the file (`ragvqa.locations.Locations.path`)."""
        return self.where.path(value)

    def model_ref(self, value: str) -> str:
        """A local model folder, else a hub id (`ragvqa.locations.Locations.model_ref`)."""
        return self.where.model_ref(value)

    def section(self, name: str) -> dict[str, Any]:
        """The raw mapping of a section (what runs record); refused when missing."""
        value = self.config.get(name)
        if not isinstance(value, dict):
            raise UserError(f"the pipeline has no '{name}' section", path=self.name or None)
        return value

    @property
    def _encoder(self) -> EncoderSection:
        """The validated `encoder` section (refused in one line when the file has none)."""
        self.section("encoder")
        return self.settings.encoder or EncoderSection()

    def _reader_spec(self) -> dict[str, Any]:
        """The raw `reader.generator` mapping (what keys and records hold)."""
        return self.section("reader").get("generator") or {}

    def check(self) -> None:
        """Fail now, before any model loads, on unknown templates or a missing reader
        (`ragvqa.pipeline_calls.check_settings`)."""
        check_settings(self)

    # -- components --------------------------------------------------------------------------
    @cached_property
    def _encoder_ref(self) -> str:
        model = self.model_ref(self.section("encoder")["model"])
        check_kind(model, self._encoder.type)
        return model

    def encoder_model(self) -> str:
        """The encoder folder (or hub id), checked against the section's optional `type`
        (`ret` or `text`) from its config files: a mismatch is one line, before any loading."""
        return self._encoder_ref

    @cached_property
    def encoder(self) -> QueryEncoder:
        from ragvqa.models.encoders import load_encoder  # a RetEncoder or a TextEncoder

        spec = self._encoder
        with self.startup.span("encoder"):
            return load_encoder(
                self.encoder_model(),
                device=spec.device,
                dtype=parse_dtype(spec.dtype),
                batch_size=spec.batch_size,
            )

    @cached_property
    def kb(self) -> KBStore:
        spec = self.section("kb")
        folder = Path(self.path(spec["path"]))
        if not (folder / KB_MANIFEST).is_file() and spec.get("source"):
            self._build_kb(self.where.writable(folder, "kb.path"), dict(spec["source"]))
        with self.startup.span("kb"):
            return KBStore(folder)  # the manifest only: shards open when passages are read

    def _build_kb(self, folder: Path, source: dict[str, Any]) -> None:
        from ragvqa.kb.build import BuildParams, build_kb  # the KB readers

        try:
            params = BuildParams(**self.where.kb_source(source))
        except TypeError as exc:
            raise UserError(f"kb.source: {exc}", path=self.name or None) from None
        folder.mkdir(parents=True, exist_ok=True)
        build_kb(params, folder)

    @cached_property
    def index(self) -> Index:
        from ragvqa.index.build import faiss_settings_differ  # numpy, faiss
        from ragvqa.index.faiss_index import SEARCH_TIME
        from ragvqa.index.search import PassageIndex

        spec = self.section("index")
        folder = Path(self.path(spec["path"]))
        wanted = spec.get("faiss") or {}
        if (self.settings.index or IndexSection()).build:
            if not (folder / INDEX_MANIFEST).is_file():
                self._build_index(self.where.writable(folder, "index.path"))
            elif wanted and faiss_settings_differ(folder, wanted):
                # the embedding shards in the folder are reused: only faiss is built again
                note(f"rebuilding the faiss index in {folder} for index.faiss = {wanted}")
                self._build_index(self.where.writable(folder, "index.path"))
        search = {k: v for k, v in wanted.items() if k in SEARCH_TIME}
        kb, identity = self.kb, self.encoder_key()
        with self.startup.span("index"):
            return PassageIndex(folder, kb, encoder_identity=identity, search=search)

    def _build_index(self, folder: Path) -> None:
        from ragvqa.index import faiss_index as fx  # numpy, faiss
        from ragvqa.index.build import IndexParams, build_index

        kb_folder = self.kb.folder  # builds the KB first when it is missing
        params = IndexParams(
            kb=str(kb_folder),
            encoder=self.encoder_model(),
            faiss=fx.FaissParams(**(self.section("index").get("faiss") or {})),
            doc_template=(self.settings.index or IndexSection()).doc_template,  # None: the kind's
            batch_size=self._encoder.batch_size,
        )
        build_index(params, folder, device=self._encoder.device)

    @property
    def generator(self) -> Reader:
        """The reader, by its old name."""
        return self.reader

    @generator.setter
    def generator(self, reader: Reader) -> None:
        vars(self)["reader"] = reader

    @cached_property
    def reader(self) -> Reader:
        starting = getattr(self, "_reader_start", None)
        if starting is not None:  # start_reader() is building it: wait for it
            return starting.result()
        return self._build_reader()

    def _build_reader(self, started: float | None = None) -> Reader:
        # a null setting removes what a base file set ("limit_mm_per_prompt: null")
        spec = {k: v for k, v in self._reader_spec().items() if v is not None}
        if "model" in spec:
            spec["model"] = self.model_ref(spec["model"])
        spec.update(spec.pop("engine_args", None) or {})  # other vLLM engine arguments
        with self.startup.span("reader", started):  # started: when it was asked for
            return build(READERS, spec)

    def start_reader(self) -> None:
        """Start the reader in a background thread when its class has `preload` (its start
        mostly waits on an engine process, as vLLM's does): `preload` imports here, then the
        engine starts while this thread goes on; `reader` waits for it (and raises its error).
        No-op for a reader built, given, starting, or a subclass's own `reader`/`generator`."""
        ours = all(
            inspect.getattr_static(type(self), n) is inspect.getattr_static(Components, n)
            for n in ("reader", "generator")
        )  # a subclass's (or a test's) own reader is never replaced
        if not ours or self.loaded("reader") or hasattr(self, "_reader_start"):
            return
        kind = self._reader_spec().get("type")
        if (preload := getattr(READERS.get(str(kind)), "preload", None)) is None:
            return
        with self.startup.span("reader_import"):
            preload()
        asked = since_start()
        self._reader_start = Background("reader", lambda: self._build_reader(asked))

    start_generator = start_reader  # the old name

    @cached_property
    def prompts(self) -> PromptLibrary:
        return PromptLibrary()

    @cached_property
    def template(self) -> Template:
        return self.prompts.get(self.reader_settings.prompt)

    @cached_property
    def reranker(self) -> Reranker | None:
        """The `rerank` section's reranker (None without one), given the parts its class
        `needs` (the encoder and KB, the reader and templates, ...)."""
        spec = dict(self.config.get("rerank") or {})
        if not spec:
            return None
        needs = getattr(RERANKERS.get(str(spec.get("type"))), "needs", ())
        if "model" in spec:
            spec["model"] = self.model_ref(spec["model"])
        return build(RERANKERS, spec, **{part: getattr(self, part) for part in needs})

    def close(self) -> None:
        """Close what this pipeline built (an engine it started); given components stay open.
        An engine still starting in the background is closed by its thread once started."""
        if "reader" in self._given:
            return
        if self.loaded("reader") and hasattr(self.reader, "close"):
            self.reader.close()
        starting = getattr(self, "_reader_start", None)
        if starting is not None:
            starting.close()

    # -- the stages a part does alone ----------------------------------------------------------
    def encode(self, queries: Sequence[VQAQuery]) -> tuple[Any, Any]:
        """(query vectors [N, n, dim], image present flags [N])."""
        vectors = self.encoder.encode_queries(queries)
        return vectors, self.encoder.last_present

    def search(self, query_ids: Sequence[str], vectors: Any) -> list[RetrievalResult]:
        """The first-stage results of the queries' vectors."""
        return self.index.retrieve(
            list(query_ids), vectors, self.top_k, one_per_page=self.one_per_page
        )

    # -- the reader's prompt -------------------------------------------------------------------
    def render(
        self, question: str, image: str | None, passages: Sequence[RetrievedPassage]
    ) -> ChatPrompt:
        """The reader's prompt: the top `passages` of the result, fitted to the context."""
        settings, template = self.reader_settings, self.template
        evidence = list(passages[: settings.passages])
        image = image if settings.images else None

        def render(chosen: Sequence[Any]) -> ChatPrompt:
            return template.render(question=question, passages=chosen, image=image)

        counter, context = self.token_counter
        if counter is None:
            return render(evidence)
        return fit_prompt(render, evidence, counter, context, settings.sampling.max_tokens)

    @cached_property
    def token_counter(self) -> tuple[Any, int]:
        """(the reader's token counter, its context in tokens), or (None, 0) without one."""
        # the reader's own context length when the pipeline does not set one
        context = (
            self.reader_settings.context
            or self._reader_spec().get("max_model_len")
            or getattr(self.reader, "context_length", None)
        )
        counter = reader_token_counter(self.reader) if context else None
        return counter, int(context or 0)

    def evidence_count(self, prompt: ChatPrompt, passages: Sequence[RetrievedPassage]) -> int:
        """How many of the top passages `prompt` was rendered with: `passages` of them, less
        those the context fitting dropped (a last passage cut short still counts)."""
        given = min(self.reader_settings.passages, len(passages))
        dropped = prompt.truncated_passages
        return given - dropped if dropped < given else min(given, 1)

    # -- identities (stage cache keys) --------------------------------------------------------
    @cached_property
    def _encoder_identity(self) -> dict[str, Any]:
        return checkpoint_identity(self.encoder_model())

    def encoder_key(self) -> dict[str, Any]:
        """The encoder's identity (config hash, weights fingerprint), read without loading it."""
        return self._encoder_identity

    def encoder_dtype(self) -> str:
        """The dtype queries are encoded in (the section's `dtype`, else the device's default),
        by name: encodings in another dtype are other results, so it is part of cache keys."""
        spec = self._encoder
        _, dtype = resolve_device_dtype(spec.device, parse_dtype(spec.dtype))
        return str(dtype).removeprefix("torch.")

    def index_key(self) -> dict[str, Any]:
        manifest = self.index.manifest
        return {
            "files": {k: v["sha256"] for k, v in manifest["files"].items()},
            "faiss": asdict(self.index.params),  # as searched (search-time settings applied)
            "kb": manifest["kb"]["fingerprint"],
        }

    def rerank_key(self) -> Any:
        """The reranker's settings and the identity of the model it runs (weights included)."""
        spec = self.config.get("rerank")
        if spec and "reader" in getattr(RERANKERS.get(str(spec.get("type"))), "needs", ()):
            reader = self._reader_spec()  # a reranker that asks the reader (entity_choice)
            return {"rerank": spec, "reader": reader, "weights": self._weights_key(reader)}
        if spec and spec.get("model"):
            return {"rerank": spec, "model": self._weights_key(spec)}
        return spec or None

    def _weights_key(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The identity of the models a component spec names (`model`, and `tokenizer` when
        given): `ragvqa.cached_stages.model_identity`, its weights' fingerprint."""
        revision = spec.get("revision")
        return {
            key: cached_stages.model_identity(self.model_ref(spec[key]), revision)
            for key in ("model", "tokenizer")
            if spec.get(key)
        }

    def reader_key(self) -> dict[str, Any]:
        generator = self._reader_spec()
        return {
            "generator": self.section("reader").get("generator"),
            "weights": self._weights_key(generator),
            "template": self.template.ref,
            "template_hash": self.template.sha256,
            "settings": {**vars(self.reader_settings), "sampling": self.reader_settings.sampling},
        }
