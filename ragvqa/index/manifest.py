"""The index manifest: what an index was built from, so a mismatch is refused, not searched.

`index.json` records the encoder (source, preset: a ReT preset or "text", config hash, weights
fingerprint), the document text template, vector shape and count, the KB (path, fingerprint,
passages), the faiss parameters, and the size, sha256 and head-tail fingerprint of every file.

Opening an index checks the cheap things: the manifest's shape, each file's size and its
head-tail fingerprint (sha256 of the size and the first and last MiB: two reads, whatever the
size, so a file replaced, truncated or changed near either end is refused on open), counts, KB
fingerprint and encoder identity. `ragvqa index verify` re-hashes every byte of every file, so
it also catches a change in the middle of a large file. Manifests written before the head-tail
fingerprint existed still open (sizes are checked), with a one-line note suggesting `verify`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import head_tail_sha256, read_json, sha256_file
from ragvqa.logs import note
from ragvqa.models import encoders
from ragvqa.models.encoders import identity

MANIFEST = "index.json"
BUILD = "build.json"
FORMAT = 1
FAISS_FILE = "faiss.index"
VECTORS_FILE = "vectors.f16.npy"
QUICK = "head_tail_sha256"  # a file entry's cheap fingerprint (`ragvqa.io.head_tail_sha256`)
_NOTED: set[Path] = set()  # folders whose missing quick fingerprints were noted or verified


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
        manifest = read_json(path)
    except UserError:  # unreadable, not UTF-8 or not JSON: not a manifest either
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError("index.json is not a ragvqa index manifest", path=str(path))
    problem = manifest_problem(manifest)
    if problem:
        raise UserError(f"not a valid ragvqa index manifest: {problem}", path=str(path))
    return manifest


_SHAPE = {
    "files": dict,
    "kb": dict,
    "encoder": dict,
    "faiss": dict,
    "vectors_per_document": int,
    "dim": int,
    "documents": int,
    "index_vectors": int,
}


def manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What makes a manifest unusable (a missing or mistyped entry, an empty file list, a
    file name with a path in it), or None."""
    from dataclasses import fields

    from ragvqa.index.faiss_index import FaissParams  # numpy stays out of `ragvqa --help`

    for key, kind in _SHAPE.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            return f"'{key}' is missing or not {'an object' if kind is dict else 'a number'}"
    files = manifest["files"]
    if FAISS_FILE not in files:
        return f"'files' does not list {FAISS_FILE}" if files else "'files' is empty"
    for name, meta in files.items():
        if Path(name).name != name or name in (".", ".."):
            return f"file name {name!r} is not a plain name in the index folder"
        if not (
            isinstance(meta, dict)
            and isinstance(meta.get("bytes"), int)
            and isinstance(meta.get("sha256"), str)
        ):
            return f"files.{name} needs 'bytes' and 'sha256'"
    unknown = set(manifest["faiss"]) - {f.name for f in fields(FaissParams)}
    if unknown:
        return f"unknown faiss settings {sorted(unknown)}"
    kb, encoder = manifest["kb"], manifest["encoder"]
    if not isinstance(kb.get("fingerprint"), str) or not isinstance(kb.get("passages"), int):
        return "'kb' needs 'fingerprint' and 'passages'"
    if not all(isinstance(encoder.get(k), str) for k in ("config_hash", "weights_fingerprint")):
        return "'encoder' needs 'config_hash' and 'weights_fingerprint'"
    if manifest["vectors_per_document"] < 1 or manifest["dim"] < 1:
        return "'vectors_per_document' and 'dim' must be at least 1"
    return None


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


def file_entry(path: Path) -> dict[str, Any]:
    """A manifest's record of one index file: size, sha256 and head-tail fingerprint."""
    size = path.stat().st_size
    return {"bytes": size, "sha256": sha256_file(path), QUICK: head_tail_sha256(path)}


def check_files(folder: Path, manifest: dict[str, Any], *, hashes: bool) -> None:
    """Every file exists with its recorded size and head-tail fingerprint, or, when `hashes`,
    its recorded sha256 (every byte)."""
    unfingerprinted = []
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
        if not hashes and QUICK in meta and head_tail_sha256(path) != meta[QUICK]:
            raise UserError(
                "index file content changed since the build (its first or last MiB differs "
                "from the manifest's fingerprint)",
                path=str(path),
            )
        if QUICK not in meta:
            unfingerprinted.append(name)
    _note_unfingerprinted(folder, unfingerprinted, verified=hashes)


def _note_unfingerprinted(folder: Path, names: list[str], *, verified: bool) -> None:
    """Once per folder and process: files an open could check by size only."""
    key = folder.resolve()
    if verified:
        _NOTED.add(key)
    if names and key not in _NOTED:
        _NOTED.add(key)
        note(
            f"{folder}/{MANIFEST} predates head-tail fingerprints: opening it checks "
            f"the sizes of {', '.join(names)} only; 'ragvqa index verify {folder}' checks "
            "every byte"
        )


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
