"""`ragvqa index build`: encode a KB's passages into shards, then build the faiss index.

Step 1 encodes rows shard by shard (progress with ETA); finished shards survive a kill and are
not recomputed. Step 2 builds the index from the shards: one vector per document for
single-vector encoders (ReT-2, text encoders), every token vector for multi-vector ones (ReT
v1), and merges the shards into one fp16 array, `vectors.f16.npy` [passages, vectors, dim]; once the
manifest is written the shards are removed, so the vectors are stored once. Search reads that
array memory-mapped (exact MaxSim for multi-vector documents, exact rescoring of an `ivfpq`
index's candidates when `refine` is set), and building again in the same folder with other faiss
settings starts from it without encoding anything.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ragvqa import __version__
from ragvqa.errors import UserError
from ragvqa.index import faiss_index as fx
from ragvqa.index.documents import check_template, document_text
from ragvqa.index.manifest import (
    BUILD,
    FAISS_FILE,
    FORMAT,
    MANIFEST,
    QUICK,
    VECTORS_FILE,
    checkpoint_identity,
    file_entry,
    read_manifest,
)
from ragvqa.index.ray_engine import encode_with_ray
from ragvqa.index.shards import iter_shards, missing_shards, shard_ranges, write_shard
from ragvqa.io import atomic_path, head_tail_sha256, read_json, write_json
from ragvqa.kb.store import KBStore
from ragvqa.models.checkpoint import parse_dtype
from ragvqa.models.encoders import encoder_spec, load_encoder
from ragvqa.progress import ProgressBar
from ragvqa.schema.base import defaults
from ragvqa.schema.sections import EncoderSection, IndexSection


@dataclass(frozen=True)
class IndexParams:
    """What an index is built from and how; a folder holds one build."""

    kb: str
    encoder: str
    faiss: fx.FaissParams = fx.FaissParams()
    # None: the encoder kind's own (EncoderSpec.doc_template); the `index` section's default
    doc_template: str | None = defaults(IndexSection)["doc_template"]
    rows_per_shard: int = 8192
    batch_size: int = defaults(EncoderSection)["batch_size"]  # the `encoder` section's
    engine: str = "local"
    ray_address: str | None = None
    ray_actors: int = 0
    dtype: str | None = None  # encoder dtype; None: bfloat16 on CUDA, float32 on CPU


def _check_build_state(out: Path, state: dict[str, Any]) -> None:
    path = out / BUILD
    if path.is_file():
        previous = read_json(path, invalid="not a ragvqa index build state; use a new --out folder")
        if previous != state:
            raise UserError(
                "this folder holds an index build of another KB, encoder or settings; "
                "use a new --out folder",
                path=str(out),
            )
    write_json(path, state)


def encode_shards(
    kb: KBStore, encoder: Any, out: Path, params: IndexParams, progress: bool
) -> list:
    """Encode every missing shard; returns the shard row ranges."""
    ranges = shard_ranges(len(kb), params.rows_per_shard)
    todo = missing_shards(out / "emb", ranges)
    if params.engine == "ray":
        tasks = [(i, *ranges[i]) for i in todo]
        encode_with_ray(
            params.kb,
            params.encoder,
            out,
            params.doc_template,
            params.batch_size,
            tasks,
            address=params.ray_address,
            actors=params.ray_actors,
            dtype=params.dtype,
        )
        return ranges
    if params.engine != "local":
        raise UserError(f"unknown engine {params.engine!r} (local or ray)")
    rows = sum(ranges[i][1] - ranges[i][0] for i in todo)
    with ProgressBar("encoding passages", rows, enabled=progress and rows > 0) as bar:
        for i in todo:
            start, end = ranges[i]
            docs = [
                replace(p, text=document_text(p, params.doc_template))
                for p in kb.passages(range(start, end))
            ]
            write_shard(out / "emb", i, encoder.encode_documents(docs))
            bar.advance(end - start)
    return ranges


def _token_matrix(vectors: np.ndarray) -> np.ndarray:
    return vectors.reshape(-1, vectors.shape[-1]).astype(np.float32)


def finished_vectors(out: Path, shape: tuple[int, int, int]) -> dict[str, Any] | None:
    """The manifest entry of a finished build's stored vectors when they hold every row in
    `shape` (then nothing needs encoding), else None."""
    try:
        manifest = read_json(out / MANIFEST)
        entry = manifest["files"][VECTORS_FILE]
        stored = np.load(out / VECTORS_FILE, mmap_mode="r")
    except (UserError, OSError, ValueError, KeyError, TypeError):
        return None
    if stored.shape != shape or (out / VECTORS_FILE).stat().st_size != entry["bytes"]:
        return None
    if QUICK not in entry:  # a manifest written before head-tail fingerprints
        entry = {**entry, QUICK: head_tail_sha256(out / VECTORS_FILE)}
    return {
        "entry": entry,
        "images": manifest.get("images"),
        "encoder_dtype": manifest.get("encoder_dtype"),
    }


def _chunks(out: Path, ranges: list, from_vectors: bool) -> Any:
    """(first row, fp16 vectors) per row range, from the shards or the stored vectors."""
    if not from_vectors:
        yield from iter_shards(out / "emb", ranges)
        return
    stored = np.load(out / VECTORS_FILE, mmap_mode="r")
    for start, end in ranges:
        yield start, np.asarray(stored[start:end])


def build_faiss(
    out: Path,
    ranges: list,
    n_vec: int,
    dim: int,
    params: fx.FaissParams,
    *,
    from_vectors: bool = False,
) -> tuple:
    """Build and save the faiss index from the shards (merging them into the stored vectors)
    or, with `from_vectors`, from the stored vectors of an earlier build."""
    rows = ranges[-1][1] if ranges else 0
    p = params.resolved(rows * n_vec, dim)
    index = fx.new_index(p, dim)
    if fx.train_sample_size(p):
        sample = _training_sample(out, ranges, fx.train_sample_size(p), from_vectors)
        fx.train(index, sample, p)
    with ExitStack() as stack:
        keep = None
        if not from_vectors:  # the shards are merged into the stored vectors on the way
            tmp = stack.enter_context(atomic_path(out / VECTORS_FILE, fixed=True))
            keep = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.float16, shape=(rows, n_vec, dim)
            )
        for start, vectors in _chunks(out, ranges, from_vectors):
            fx.add(index, _token_matrix(vectors))
            if keep is not None:
                keep[start : start + len(vectors)] = vectors
        if keep is not None:
            keep.flush()
            del keep
    fx.save_index(index, out / FAISS_FILE)
    return index.ntotal, p


def _drop_shards(out: Path) -> None:
    """Remove the embedding shards once the stored vectors and the manifest hold them."""
    folder = out / "emb"
    for path in folder.glob("*shard-*.safetensors*"):
        path.unlink()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _training_sample(out: Path, ranges: list, size: int, from_vectors: bool) -> np.ndarray:
    """Up to `size` vectors spread over all row ranges (a fixed share of each)."""
    total = sum(e - s for s, e in ranges)
    rng = np.random.default_rng(0)
    parts = []
    for _, vectors in _chunks(out, ranges, from_vectors):
        flat = _token_matrix(vectors)
        take = min(len(flat), max(1, int(round(size * len(vectors) / max(total, 1)))))
        parts.append(flat[np.sort(rng.choice(len(flat), take, replace=False))])
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def build_index(
    params: IndexParams, out: str | Path, *, device: str | None = None, progress: bool = True
) -> dict[str, Any]:
    """Build (or resume building) an index folder; returns its manifest. The settings are
    checked before anything is written, so a mistyped one leaves no folder behind."""
    out = Path(out)
    kb = KBStore(params.kb)
    if len(kb) == 0:
        raise UserError("the KB has no passages", path=params.kb)
    # identity and output shape come from the encoder's config files (ReT or text); the
    # weights are loaded only when something is to be encoded (a rebuild from stored vectors
    # needs none)
    identity = checkpoint_identity(params.encoder)
    spec = encoder_spec(params.encoder)
    params = replace(params, doc_template=params.doc_template or spec.doc_template)
    state = {
        "kb_fingerprint": kb.fingerprint,
        "encoder": identity,
        "doc_template": params.doc_template,
        "rows_per_shard": params.rows_per_shard,
    }
    if params.dtype:  # shards of one build are all encoded in the same dtype
        state["dtype"] = str(parse_dtype(params.dtype)).removeprefix("torch.")
    n_vec, dim = spec.output_vectors, spec.output_dim
    check_template(params.doc_template)
    params.faiss.resolved(len(kb) * n_vec, dim)  # an unknown kind or PQ size fails now
    if params.engine not in ("local", "ray"):
        raise UserError(f"unknown engine {params.engine!r} (local or ray)")
    out.mkdir(parents=True, exist_ok=True)
    _check_build_state(out, state)
    started = time.time()
    earlier = finished_vectors(out, (len(kb), n_vec, dim))
    if earlier is None:
        # with Ray, the actors encode; the model loaded here checks the checkpoint first
        encoder = load_encoder(
            params.encoder,
            device="cpu" if params.engine == "ray" else device,
            dtype=parse_dtype(params.dtype),
            batch_size=params.batch_size,
            progress=False,
        )
        ranges = encode_shards(kb, encoder, out, params, progress)
        images = {
            "missing": encoder.stats.missing_images,
            "unreadable": encoder.stats.unreadable_images,
        }
        dtype = state.get("dtype") or (
            str(encoder.model.dtype).removeprefix("torch.")
            if params.engine == "local"
            else "bfloat16 on GPU actors, float32 on CPU ones"
        )
    else:  # a finished build of the same KB and encoder: only faiss is built again
        ranges = shard_ranges(len(kb), params.rows_per_shard)
        images, dtype = earlier["images"], earlier["encoder_dtype"]
    count, resolved = build_faiss(
        out, ranges, n_vec, dim, params.faiss, from_vectors=earlier is not None
    )
    files = {
        FAISS_FILE: file_entry(out / FAISS_FILE),
        VECTORS_FILE: earlier["entry"] if earlier else file_entry(out / VECTORS_FILE),
    }
    manifest = {
        "format": FORMAT,
        "ragvqa_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.time() - started, 1),
        "encoder": identity,
        "doc_template": params.doc_template,
        "encoder_dtype": dtype,
        "vectors_per_document": n_vec,
        "dim": dim,
        "documents": len(kb),
        "index_vectors": count,
        "kb": {"path": str(params.kb), "fingerprint": kb.fingerprint, "passages": len(kb)},
        "faiss": asdict(resolved),
        "rows_per_shard": params.rows_per_shard,
        "images": images,
        "files": files,
    }
    write_json(out / MANIFEST, manifest)
    _drop_shards(out)
    return manifest


def faiss_settings_differ(folder: Path, wanted: dict[str, Any]) -> bool:
    """Whether the index built in `folder` has other build-time faiss settings than `wanted`
    (a pipeline's `index.faiss`), or lacks the stored vectors that `wanted`'s refinement reads:
    then faiss is built again from the folder's vectors."""
    manifest = read_manifest(folder)
    try:
        desired = fx.FaissParams(**wanted)
    except TypeError as exc:
        raise UserError(f"index.faiss: {exc}") from None
    desired = desired.resolved(manifest["index_vectors"], manifest["dim"])
    built = fx.FaissParams(**manifest["faiss"])
    n_vec = int(manifest["vectors_per_document"])
    missing = fx.reads_vectors(n_vec, desired) and VECTORS_FILE not in manifest["files"]
    return desired.build_time() != built.build_time() or missing
