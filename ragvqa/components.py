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
(`components={"generator": g}`) is used as it is and never built. `start_generator` starts a
vLLM reader in a background thread; `startup` records when each component loaded.

The identities of the components (`encoder_key`, `index_key`, `rerank_key`, `reader_key`) are
what stage caches and generation journals are keyed by. `ragvqa.pipeline.Pipeline` runs the
stages over these components.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

from ragvqa import cached_stages
from ragvqa.config import Origins, build
from ragvqa.errors import UserError
from ragvqa.generate.base import Sampling
from ragvqa.generate.context import fit_prompt, reader_token_counter
from ragvqa.hub import resolve_input
from ragvqa.index.manifest import MANIFEST as INDEX_MANIFEST
from ragvqa.index.manifest import checkpoint_identity
from ragvqa.kb.store import MANIFEST as KB_MANIFEST
from ragvqa.kb.store import KBStore
from ragvqa.models.checkpoint import parse_dtype, resolve_device_dtype
from ragvqa.models.encoders import check_kind
from ragvqa.prompts import PromptLibrary
from ragvqa.reader_settings import ReaderSettings, reader_settings  # noqa: F401 (re-exported)
from ragvqa.registry import GENERATORS, RERANKERS
from ragvqa.resources import cache_root
from ragvqa.schema import validate_pipeline
from ragvqa.schema.components import with_remote_code
from ragvqa.schema.sections import ReaderSection, RetrievalSection
from ragvqa.startup import Background, StartupLog, since_start
from ragvqa.types import ChatPrompt, RetrievedPassage

ENV_VAR = re.compile(r"\$\{(\w+)\}")  # `${RAGVQA_DATA}` in a path
COMPONENTS = ("encoder", "kb", "index", "generator", "reranker", "prompts", "template")


def _notice(message: str) -> None:
    """A one-line note on stderr (stdout stays for results, e.g. `answer --json`)."""
    print(f"ragvqa: {message}", file=sys.stderr, flush=True)


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
        given = dict(components or {})
        if set(given) - set(COMPONENTS):
            raise ValueError(f"unknown components {sorted(set(given) - set(COMPONENTS))}")
        self.__dict__.update(given)  # the cached properties below find them already set
        self._given = frozenset(given)  # the caller owns these: close() leaves them open
        self.startup = StartupLog()
        typed = validate_pipeline(
            config, origins=origins, name=name or None, trust_remote_code=trust_remote_code
        )
        if trust_remote_code:
            config = with_remote_code(config)
        self.config, self.folder, self.name = config, folder, name or config.get("name", "")
        self._cwd = Path.cwd()  # what relative roots from the environment are read against
        self.reader_settings = reader_settings(typed.reader or ReaderSection())
        retrieval = typed.retrieval or RetrievalSection()
        self.top_k, self.one_per_page = retrieval.top_k, retrieval.one_per_page
        self.retrieval_mode = retrieval.mode

    # -- settings ----------------------------------------------------------------------------
    def path(self, value: str) -> str:
        """A path from the file: `${VAR}`s expanded (`RAGVQA_CACHE`: the cache root), a
        relative root from the environment read against the working directory the pipeline
        was loaded in, then relative to the file's folder. A missing variable is one line."""

        def root(found: re.Match[str]) -> str:
            name = found.group(1)
            raw = cache_root() if name == "RAGVQA_CACHE" else os.environ.get(name)
            if not raw:
                how = "the data root (see docs/data.md)" if name == "RAGVQA_DATA" else "a folder"
                raise UserError(
                    f"{value} is under ${{{name}}}: set {name} to {how}", path=self.name or None
                )
            return str(self._cwd / Path(raw).expanduser())

        text = os.path.expanduser(ENV_VAR.sub(root, str(value)))
        return str(Path(text) if Path(text).is_absolute() else (self.folder / text).resolve())

    def model_ref(self, value: str) -> str:
        """A local model folder (relative to the file) when it exists or the value names a
        `${VAR}` root (an error then names the expanded path), else a hub id."""
        local = self.path(value)
        return local if Path(local).exists() or ENV_VAR.search(str(value)) else str(value)

    def writable(self, folder: Path, key: str) -> Path:
        """`folder` (what `key` names), refused in one line when it is inside the installed
        package or its shipped pipelines: a relative path or root read against the package."""
        from ragvqa.resources import resource_dir

        for inside in (Path(__file__).resolve().parent, resource_dir("pipelines").resolve()):
            if folder.resolve().is_relative_to(inside):
                raise UserError(
                    f"{key} is {folder}, inside ragvqa's installed files ({inside}): set "
                    "RAGVQA_CACHE, or give an absolute path",
                    path=self.name or None,
                )
        return folder

    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        if not isinstance(value, dict):
            raise UserError(f"the pipeline has no '{name}' section", path=self.name or None)
        return value

    # -- components --------------------------------------------------------------------------
    def encoder_model(self) -> str:
        """The encoder folder (or hub id), checked against the section's optional `type`
        (`ret` or `text`) from its config files: a mismatch is one line, before any loading."""
        if "_encoder_model" not in self.__dict__:
            spec = self.section("encoder")
            model = self.model_ref(spec["model"])
            check_kind(model, spec.get("type"))
            self.__dict__["_encoder_model"] = model
        return self.__dict__["_encoder_model"]

    @cached_property
    def encoder(self) -> Any:
        from ragvqa.models.encoders import load_encoder  # a RetEncoder or a TextEncoder

        spec = self.section("encoder")
        with self.startup.span("encoder"):
            return load_encoder(
                self.encoder_model(),
                device=spec.get("device"),
                dtype=parse_dtype(spec.get("dtype")),
                batch_size=int(spec.get("batch_size", 64)),
            )

    @cached_property
    def kb(self) -> Any:
        spec = self.section("kb")
        folder = Path(self.path(spec["path"]))
        if not (folder / KB_MANIFEST).is_file() and spec.get("source"):
            self._build_kb(self.writable(folder, "kb.path"), dict(spec["source"]))
        with self.startup.span("kb"):
            return KBStore(folder)  # the manifest only: shards open when passages are read

    def _build_kb(self, folder: Path, source: dict[str, Any]) -> None:
        from ragvqa.kb.build import BuildParams, build_kb  # the KB readers

        given = str(source.get("input", ""))  # ${RAGVQA_DATA}/...: an error names the expansion
        source["input"] = resolve_input(self.path(given) if ENV_VAR.search(given) else given, self)
        for key in ("images_dir", "images_map"):
            if source.get(key):
                source[key] = self.path(source[key])
        try:
            params = BuildParams(**source)
        except TypeError as exc:
            raise UserError(f"kb.source: {exc}", path=self.name or None) from None
        folder.mkdir(parents=True, exist_ok=True)
        build_kb(params, folder)

    @cached_property
    def index(self) -> Any:
        from ragvqa.index.build import faiss_settings_differ  # numpy, faiss
        from ragvqa.index.faiss_index import SEARCH_TIME
        from ragvqa.index.search import PassageIndex

        spec = self.section("index")
        folder = Path(self.path(spec["path"]))
        wanted = spec.get("faiss") or {}
        if spec.get("build", True):
            if not (folder / INDEX_MANIFEST).is_file():
                self._build_index(self.writable(folder, "index.path"), spec)
            elif wanted and faiss_settings_differ(folder, wanted):
                # the embedding shards in the folder are reused: only faiss is built again
                _notice(f"rebuilding the faiss index in {folder} for index.faiss = {wanted}")
                self._build_index(self.writable(folder, "index.path"), spec)
        search = {k: v for k, v in wanted.items() if k in SEARCH_TIME}
        kb, identity = self.kb, self.encoder_key()
        with self.startup.span("index"):
            return PassageIndex(folder, kb, encoder_identity=identity, search=search)

    def _build_index(self, folder: Path, spec: dict[str, Any]) -> None:
        from ragvqa.index import faiss_index as fx  # numpy, faiss
        from ragvqa.index.build import IndexParams, build_index

        kb_folder = self.kb.folder  # builds the KB first when it is missing
        params = IndexParams(
            kb=str(kb_folder),
            encoder=self.encoder_model(),
            faiss=fx.FaissParams(**(spec.get("faiss") or {})),
            doc_template=spec.get("doc_template"),  # None: the encoder kind's default
            batch_size=int(self.section("encoder").get("batch_size", 64)),
        )
        build_index(params, folder, device=self.section("encoder").get("device"))

    @cached_property
    def generator(self) -> Any:
        started = self.__dict__.get("_reader_start")
        if started is not None:  # start_generator() is building it: wait for it
            return started.result()
        return self._build_generator()

    def _build_generator(self, started: float | None = None) -> Any:
        # a null setting removes what a base file set ("limit_mm_per_prompt: null")
        spec = {
            k: v
            for k, v in (self.section("reader").get("generator") or {}).items()
            if v is not None
        }
        if "model" in spec:
            spec["model"] = self.model_ref(spec["model"])
        spec.update(spec.pop("engine_args", None) or {})  # other vLLM engine arguments
        with self.startup.span("reader", started):  # started: when it was asked for
            return build(GENERATORS, spec)

    def start_generator(self) -> None:
        """Start the reader in a background thread when its class has `preload` (its start
        mostly waits on an engine process, as vLLM's does): `preload` imports here, then the
        engine starts while this thread goes on; `generator` waits for it (and raises its
        error). No-op for a reader built, given, starting, or a subclass's own `generator`."""
        ours = isinstance(inspect.getattr_static(type(self), "generator"), cached_property)
        if not ours or {"generator", "_reader_start"} & set(self.__dict__):
            return
        kind = (self.section("reader").get("generator") or {}).get("type")
        if (preload := getattr(GENERATORS.get(str(kind)), "preload", None)) is None:
            return
        with self.startup.span("reader_import"):
            preload()
        asked = since_start()
        self.__dict__["_reader_start"] = Background("reader", lambda: self._build_generator(asked))

    @cached_property
    def prompts(self) -> Any:
        return PromptLibrary()

    @cached_property
    def template(self) -> Any:
        return self.prompts.get(self.reader_settings.prompt)

    @cached_property
    def reranker(self) -> Any:
        spec = self.config.get("rerank")
        if not spec:
            return None
        spec = dict(spec)
        kind = spec.get("type")
        if kind == "ret_sections":
            return build(RERANKERS, spec, encoder=self.encoder, kb=self.kb)
        if kind == "entity_choice":
            template = self.prompts.get(spec.pop("template", "rerank/entity_choice"))
            sampling = Sampling(**spec.pop("sampling", {"max_tokens": 8}))
            return build(
                RERANKERS, spec, generator=self.generator, template=template, sampling=sampling
            )
        if "model" in spec:
            spec["model"] = self.model_ref(spec["model"])
        return build(RERANKERS, spec)

    def close(self) -> None:
        """Close what this pipeline built (an engine it started); given components stay open.
        An engine still starting in the background is closed by its thread once started."""
        generator = self.__dict__.get("generator")
        if "generator" in self._given:
            return
        if generator is not None and hasattr(generator, "close"):
            generator.close()
        started = self.__dict__.get("_reader_start")
        if started is not None:
            started.close()

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

        counter, context = self._token_counter()
        if counter is None:
            return render(evidence)
        return fit_prompt(render, evidence, counter, context, settings.sampling.max_tokens)

    def _token_counter(self) -> tuple[Any, int]:
        if "_counter" not in self.__dict__:
            spec = self.section("reader").get("generator") or {}
            # the reader's own context length when the pipeline does not set one
            context = (
                self.reader_settings.context
                or spec.get("max_model_len")
                or getattr(self.generator, "context_length", None)
            )
            counter = reader_token_counter(self.generator) if context else None
            self.__dict__["_counter"] = (counter, int(context or 0))
        return self.__dict__["_counter"]

    def evidence_count(self, prompt: ChatPrompt, passages: Sequence[RetrievedPassage]) -> int:
        """How many of the top passages `prompt` was rendered with: `passages` of them, less
        those the context fitting dropped (a last passage cut short still counts)."""
        given = min(self.reader_settings.passages, len(passages))
        dropped = prompt.truncated_passages
        return given - dropped if dropped < given else min(given, 1)

    # -- identities (stage cache keys) --------------------------------------------------------
    def encoder_key(self) -> dict[str, Any]:
        """The encoder's identity (config hash, weights fingerprint), read without loading it."""
        if "_encoder_key" not in self.__dict__:
            self.__dict__["_encoder_key"] = checkpoint_identity(self.encoder_model())
        return self.__dict__["_encoder_key"]

    def encoder_dtype(self) -> str:
        """The dtype queries are encoded in (the section's `dtype`, else the device's default),
        by name: encodings in another dtype are other results, so it is part of cache keys."""
        spec = self.section("encoder")
        _, dtype = resolve_device_dtype(spec.get("device"), parse_dtype(spec.get("dtype")))
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
        if spec and spec.get("type") == "entity_choice":
            reader = self.section("reader").get("generator") or {}
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
        generator = self.section("reader").get("generator") or {}
        return {
            "generator": self.section("reader").get("generator"),
            "weights": self._weights_key(generator),
            "template": self.template.ref,
            "template_hash": self.template.sha256,
            "settings": {**vars(self.reader_settings), "sampling": self.reader_settings.sampling},
        }
