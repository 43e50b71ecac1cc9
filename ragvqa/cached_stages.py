"""The stage cache's side of the retrieval stages, and the keys cached and journalled results
are stored under. It knows no `Pipeline`: it is given keys, parts and the stage to compute.

Each stage's output is looked up under the key of everything it depends on (encode: encoder
identity and dtype, question texts and the identity of each image: a hash of its bytes; search:
the encode key, query ids, index and search settings; rerank: the search key and the reranker,
its weights included), computed on a miss and saved. Without a cache every stage is computed. A
stage's `timings` entry holds its seconds (0 when cached) and whether it was cached.
`Pipeline.retrieve_batch` runs the stages in order (the one stage loop) and hands each its
compute function (`CachedStages`: `vectors` for encode, `results` for search and rerank).

`read_keys` gives the generation journal's key of each reader batch: the reader's identity (its
spec, the fingerprint of its weights, template and hash, settings and sampling) and, per
question, the prompt rendered from it (every message text, each image by the hash of its bytes)
and the passages it was rendered from. An edited question, a replaced image or passage, other
weights: another key, so the batch is generated again; the other batches are reused.

Identities: `image_identity` (sha256 of the bytes, computed once per file and kept in memory by
path, size, mtime, ctime and inode) and `model_identity` (a local model folder: each file's
name, size and mtime and the encoder's `weights_fingerprint` of its safetensors; a hub id: its
name and revision).
"""

from __future__ import annotations

import functools
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragvqa.io import digest, sha256_file
from ragvqa.models.encoders import weights_fingerprint
from ragvqa.types import Answer, ImagePart, RetrievalResult, VQAQuery

if TYPE_CHECKING:
    from ragvqa.parts import KnowledgeBase, Template
    from ragvqa.reader_settings import ReaderSettings
    from ragvqa.run.cache import StageCache

Timings = dict[str, dict[str, Any]]


def encode_key(identity: Any, dtype: str, queries: Sequence[VQAQuery]) -> str:
    """The encode stage's key: the encoder's identity and dtype, each question and image."""
    questions = [[q.question, image_identity(q.image_path)] for q in queries]
    return digest({"encoder": identity, "dtype": dtype, "queries": questions})


class CachedStages:
    """The stages of one retrieval through the stage cache (None: every stage computed), each
    timed into `timings`; `kb` gives the KB that cached results' passages are read back from."""

    def __init__(self, cache: StageCache | None, timings: Timings, kb: Callable[[], KnowledgeBase]):
        self.cache, self.timings, self.kb = cache, timings, kb

    def vectors(
        self, key: Callable[[], str], compute: Callable[[], tuple[Any, Any]]
    ) -> tuple[Any, Any, str]:
        """(query vectors, image present flags, the key): the cache's, else `compute()`'s."""
        started, cache = time.perf_counter(), self.cache
        found = key()
        hit = cache.load_vectors(found) if cache is not None else None
        if hit is None:
            vectors, present = compute()
            if cache is not None:
                cache.save_vectors(found, vectors, present)
        else:
            vectors, present = hit
        _timed(self.timings, "encode", hit is not None, started)
        return vectors, present, found

    def results(
        self, stage: str, key: Callable[[], str], compute: Callable[[], list[RetrievalResult]]
    ) -> tuple[list[RetrievalResult], str]:
        """(a search or rerank stage's results, its key): the cache's, else `compute()`'s."""
        started, cache = time.perf_counter(), self.cache
        found = key()
        results = cache.load_results(stage, found, self.kb()) if cache is not None else None
        hit = results is not None
        if results is None:
            results = compute()
            if cache is not None:
                cache.save_results(stage, found, results)
        _timed(self.timings, stage, hit, started)
        return results, found


def read_keys(
    reader: Any,
    template: Template,
    settings: ReaderSettings,
    chunks: Sequence[Sequence[Answer]],
) -> list[str]:
    """The generation journal's key of each reader batch: the reader's identity (`reader`:
    `Pipeline.reader_key`, its spec, weights fingerprint, template, settings and sampling) and,
    for each of the batch's questions, its id, the passages the reader is given and the prompt
    `template` renders from them (`prompt_identity`)."""
    return [
        digest([reader, [prompt_identity(template, settings, a) for a in chunk]])
        for chunk in chunks
    ]


def prompt_identity(template: Template, settings: ReaderSettings, answer: Answer) -> list[Any]:
    """What the reader is given for one question: its id, the ids of the passages it may read
    and the template rendered with them, every message text and each image by the hash of its
    bytes. The render is the one before fitting to the context: the fitted prompt follows from
    it, the reader's tokenizer and its settings, which the reader's identity holds."""
    evidence = list(answer.passages[: settings.passages])
    image = answer.image if settings.images else None
    prompt = template.render(question=answer.question, passages=evidence, image=image)
    messages = [
        [
            m.role,
            [
                ["image", image_identity(p.image) or p.image]  # a URL (no file): as it is
                if isinstance(p, ImagePart)
                else ["text", p.text]
                for p in m.parts
            ],
        ]
        for m in prompt.messages
    ]
    return [answer.query_id, [rp.passage.passage_id for rp in evidence], messages]


def image_identity(path: str | None) -> str | None:
    """An image file's identity for a key: the sha256 of its bytes (None when there is no
    such file). Hashed once per file and process: kept in memory by path, size, mtime, ctime
    and inode, so a file replaced in place is hashed again."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        where = os.path.abspath(path)
        return _sha256(where, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    except OSError:  # unreadable: not remembered, tried again next time
        return None


@functools.lru_cache(maxsize=1 << 18)
def _sha256(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """The file's sha256, remembered by its path and stat (the arguments after `path`)."""
    return sha256_file(path)


def model_identity(ref: str | None, revision: str | None = None) -> Any:
    """A model's identity for a key, read without loading it. A local folder: the name, size
    and mtime of each of its files (hidden ones aside: weights, config, tokenizer, ...) plus,
    for each folder holding safetensors, the encoder's `weights_fingerprint` (their names,
    sizes, first and last MiB), so weights replaced or retrained in place are another model
    even when sizes and mtimes are kept. A single file (a GGUF): its name, size and mtime. A
    hub id (no such local path): its name and revision."""
    if not ref:
        return None
    root = Path(ref)
    if not root.exists():
        return {"hub": str(ref), "revision": revision}
    files: list[list[Any]] = []
    weights: dict[str, str] = {}
    if root.is_file():
        st = root.stat()
        return {"file": [root.name, st.st_size, st.st_mtime_ns], "revision": revision}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(folder)
        rel = here.relative_to(root).as_posix()
        for name in sorted(n for n in names if not n.startswith(".")):
            try:
                st = (here / name).stat()
            except OSError:  # a broken link
                continue
            files.append([f"{rel}/{name}", st.st_size, st.st_mtime_ns])
            if name.endswith(".safetensors") and rel not in weights:
                weights[rel] = weights_fingerprint(here)
    return {"files": digest(files), "weights": weights, "revision": revision}


def _timed(timings: Timings, stage: str, cached: bool, started: float) -> None:
    seconds = 0.0 if cached else time.perf_counter() - started
    timings[stage] = {"seconds": round(seconds, 3), "cached": cached}
