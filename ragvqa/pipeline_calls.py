"""How calls reach a `Pipeline`: one at a time, and with their arguments checked first.

A pipeline's public calls (`answer`, `answer_batch`, `retrieve_batch`, `read_batch`, `close`) take
turns on one lock (`serialised`), shared with the pipelines `variant` makes from it, so one
pipeline can be used from several threads (vLLM's engine client is not thread-safe); a closed
pipeline refuses them in one line. Arguments of the wrong type (`question=None`, bytes for an
image) are one line naming the argument, before any model loads; so are settings that cannot
work (`check_settings`) and an index built from another KB or encoder (`check_index`).
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.images import check_image
from ragvqa.index.manifest import MANIFEST as INDEX_MANIFEST
from ragvqa.kb.store import MANIFEST as KB_MANIFEST
from ragvqa.registry import READERS
from ragvqa.types import Passage, RetrievalResult, RetrievedPassage, VQAQuery

CLOSED = "this pipeline is closed: load it again (Pipeline.load) to answer more"


class Turns:
    """What a pipeline and the variants made from it share: one lock, whether the engine they
    share was closed, and the family itself (`members`: closing one closes what each built)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.closed = False
        self.members: weakref.WeakSet[Any] = weakref.WeakSet()  # a variant may be dropped


def serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` runs alone on its pipeline (one call at a time across threads), and is
    refused once the pipeline is closed."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:  # a Pipeline
        with self._turns.lock:
            if self._turns.closed:
                raise UserError(CLOSED)
            return method(self, *args, **kwargs)

    return run


def check_text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise UserError(f"{name} must be a string, not {type(value).__name__}")


def check_image_arg(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str | os.PathLike):
        raise UserError(
            f"{name} must be an image file's path (str or Path) or None, not {type(value).__name__}"
        )


def check_queries(queries: Any) -> None:
    """`queries` is a list of `VQAQuery` with a string question and a path (or None) image."""
    if isinstance(queries, str | bytes | VQAQuery) or not isinstance(queries, Sequence):
        raise UserError(f"queries must be a list of VQAQuery, not {type(queries).__name__}")
    for i, q in enumerate(queries):
        if not isinstance(q, VQAQuery):
            raise UserError(f"queries[{i}] must be a VQAQuery, not {type(q).__name__}")
        check_text(f"queries[{i}].question", q.question)
        check_image_arg(f"queries[{i}].image_path", q.image_path)


def check_query(query: VQAQuery) -> str | None:
    """Why a query cannot be answered (None when it can): an empty question or a bad image.
    A query with neither an image file nor an image id is a text-only question."""
    if not query.question.strip():
        return "empty question"
    if query.image_path is None and query.image_id is None:
        return None
    return check_image(query.image_path)


def given_result(query_id: str, passages: Sequence[Passage]) -> RetrievalResult:
    """Passages given instead of retrieved, in their order, each with score 1."""
    return RetrievalResult(
        query_id, tuple(RetrievedPassage(p, 1.0, i) for i, p in enumerate(passages))
    )


def check_settings(pipe: Any) -> None:
    """Fail now, before any model loads, on unknown templates or a missing reader (the
    schema refused unknown component types and keys at load). `pipe`: a Components."""
    if not pipe.loaded("reader"):
        READERS.get(str((pipe.section("reader").get("generator") or {}).get("type")))
    if pipe.retrieval_mode == "none" and "passages" in pipe.template.inputs:
        raise UserError(
            f"template {pipe.template.ref} needs passages, and retrieval.mode is none "
            "(answer/no_retrieval@1 needs none)",
            path=pipe.name or None,
        )
    needed = {"index": ("encoder", "kb", "index"), "oracle": ("kb",), "none": ()}
    keys = {"encoder": "model", "kb": "path", "index": "path"}
    for name in needed[pipe.retrieval_mode]:
        key = keys[name]
        if not pipe.section(name).get(key):
            raise UserError(
                f"the pipeline's '{name}' section needs '{key}'", path=pipe.name or None
            )


def check_index(pipe: Any) -> None:
    """A built index's manifest checks (files, KB, encoder; not the faiss file: ms), so that
    a mismatch fails before a reader's engine starts. `pipe`: a Components."""
    if pipe.retrieval_mode != "index" or pipe.loaded("index"):
        return
    kb = Path(pipe.path(pipe.section("kb")["path"]))
    folder = Path(pipe.path(pipe.section("index")["path"]))
    if (kb / KB_MANIFEST).is_file() and (folder / INDEX_MANIFEST).is_file():
        from ragvqa.index.search import check_index as check  # numpy

        check(folder, pipe.kb, pipe.encoder_key())
