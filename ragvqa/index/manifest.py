"""The index manifest: what an index was built from, so a mismatch is refused, not searched.

`index.json` records the encoder (source, preset: a ReT preset or "text", config hash, weights
fingerprint), the document text template, vector shape and count, the KB (path, fingerprint,
passages), the faiss parameters, and the size and sha256 of every file. Loading checks the cheap
things (sizes, counts, KB fingerprint, encoder identity); `ragvqa index verify` also re-hashes
every file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import sha256_file
from ragvqa.models import encoders
from ragvqa.models.encoders import identity

MANIFEST = "index.json"
BUILD = "build.json"
FORMAT = 1


def encoder_identity(model: Any) -> dict[str, str]:
    """Who encoded the documents: config hash plus a cheap fingerprint of the weights files,
    for a loaded ReT model or a `TextEncoder` (`checkpoint_identity` reads the same from the
    folder)."""
    source = str(getattr(model, "source", ""))
    if getattr(model, "kind", None) == encoders.TEXT:
        return encoders.text_identity(Path(source))
    return identity(source, model.config.preset, model.config.to_dict(), Path(source))


def checkpoint_identity(path_or_hub_id: str | Path) -> dict[str, str]:
    """The identity of an encoder folder (ReT or text) read without loading its weights (for
    ReT, the value `encoder_identity` gives the loaded model), so a run whose encoding is
    cached never loads the encoder."""
    return encoders.checkpoint_identity(path_or_hub_id)


def same_encoder(a: dict[str, str], b: dict[str, str]) -> bool:
    return (
        a["config_hash"] == b["config_hash"]
        and a["weights_fingerprint"] == b["weights_fingerprint"]
    )


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        unfinished = (folder / BUILD).is_file()
        problem = (
            "index build not finished (run index build again to resume)"
            if unfinished
            else "not an index folder (no index.json)"
        )
        raise UserError(problem, path=str(folder))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError("index.json is not a ragvqa index manifest", path=str(path))
    return manifest


SUMMARY_KEYS = (
    "encoder",
    "encoder_dtype",
    "vectors_per_document",
    "dim",
    "documents",
    "index_vectors",
    "kb",
    "faiss",
    "doc_template",
    "created",
    "build_seconds",
    "images",
)


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What `index info` shows: provenance, shape, counts, and bytes: on disk in all
    (`bytes`), loaded into memory at search (`bytes_in_memory`: the faiss index), and read
    memory-mapped at search (`bytes_memory_mapped`: the stored vectors, where search reads
    them, which the OS pages in as queries touch them)."""
    # numpy (through faiss_index) stays out of `ragvqa --help`, which loads this module
    from ragvqa.index.faiss_index import FaissParams, reads_vectors

    files = manifest["files"]
    data = {k: manifest.get(k) for k in SUMMARY_KEYS}
    data["bytes"] = sum(f["bytes"] for f in files.values())
    data["bytes_in_memory"] = files.get("faiss.index", {}).get("bytes", 0)
    n_vec, params = manifest["vectors_per_document"], FaissParams(**manifest["faiss"])
    read = reads_vectors(n_vec, params)
    data["bytes_memory_mapped"] = files.get("vectors.f16.npy", {}).get("bytes", 0) if read else 0
    return data


def check_files(folder: Path, manifest: dict[str, Any], *, hashes: bool) -> None:
    """Every file exists with its recorded size (and sha256 when `hashes`)."""
    for name, meta in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise UserError("index file is missing", path=str(path))
        if path.stat().st_size != meta["bytes"]:
            raise UserError(
                f"index file has {path.stat().st_size} bytes, the manifest says {meta['bytes']} "
                "(truncated or replaced)",
                path=str(path),
            )
        if hashes and sha256_file(path) != meta["sha256"]:
            raise UserError("index file content changed since the build (sha256)", path=str(path))


def check_kb(manifest: dict[str, Any], kb: Any) -> None:
    built = manifest["kb"]
    if kb.fingerprint != built["fingerprint"] or len(kb) != built["passages"]:
        raise UserError(
            f"the KB does not match the index: the index was built on KB {built['fingerprint']} "
            f"({built['passages']} passages), this KB is {kb.fingerprint} ({len(kb)} passages)",
            path=str(kb.folder),
        )


def check_encoder(manifest: dict[str, Any], identity: dict[str, str]) -> None:
    if not same_encoder(manifest["encoder"], identity):
        built = manifest["encoder"]
        raise UserError(
            f"the index was built with encoder {built['source']} (config {built['config_hash']}, "
            f"weights {built['weights_fingerprint']}), not with {identity['source']} "
            f"(config {identity['config_hash']}, weights {identity['weights_fingerprint']})"
        )
