"""The one place that tells encoder folders apart: the ReT family or a text encoder.

A folder with a `modules.json` is a sentence-transformers text encoder (`TextEncoder`); any
other folder is a ReT checkpoint, ragvqa's own or an official one (`RetEncoder`). Index
building, index manifests, the Ray engine and pipelines go through `encoder_spec`,
`checkpoint_identity` and `load_encoder`, so both kinds share one index path (same manifests,
same search). Specs and identities are read from config files, never from the weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import read_json
from ragvqa.models.checkpoint import read_retriever_config, resolve_source
from ragvqa.models.text_encoder import MODULES, read_text_config

RET = "ret"
TEXT = "text"
KINDS = (RET, TEXT)
# the text each kind reads for a passage (fields of ragvqa.index.documents.document_text)
DOC_TEMPLATES = {RET: "{display_title}\n{text}", TEXT: "{display_title}. {text}"}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
)
_VOLATILE = ("_name_or_path", "transformers_version", "architectures")


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder folder is and what its documents' vectors look like."""

    folder: Path
    kind: str  # "ret" or "text"
    output_vectors: int  # vectors per document
    output_dim: int

    @property
    def doc_template(self) -> str:
        """The document template an index uses when none is given."""
        return DOC_TEMPLATES[self.kind]


def folder_kind(folder: Path) -> str:
    return TEXT if (folder / MODULES).is_file() else RET


def encoder_spec(path_or_hub_id: str | Path) -> EncoderSpec:
    """The kind and document vector shape of an encoder, read from its config files."""
    folder = resolve_source(path_or_hub_id)
    if folder_kind(folder) == TEXT:
        return EncoderSpec(folder, TEXT, 1, read_text_config(folder).output_dim)
    head = read_retriever_config(folder)[1].head("document")
    return EncoderSpec(folder, RET, head.output_vectors, head.output_dim)


def check_kind(path_or_hub_id: str | Path, wanted: str | None) -> EncoderSpec:
    """The spec, refused when it is not of the `wanted` kind (None: either)."""
    if wanted is not None and wanted not in KINDS:
        raise UserError(f"unknown encoder type {wanted!r} (ret or text)")
    spec = encoder_spec(path_or_hub_id)
    if wanted is not None and spec.kind != wanted:
        what = "a sentence-transformers text encoder" if spec.kind == TEXT else "a ReT checkpoint"
        raise UserError(
            f"encoder.type is {wanted!r} but {spec.folder} is {what} (type {spec.kind!r})"
        )
    return spec


def weights_fingerprint(folder: Path) -> str:
    """A cheap fingerprint of a folder's safetensors files: name, size, first and last MiB."""
    weights = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.safetensors")):
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(1 << 20)
            fh.seek(max(0, size - (1 << 20)))
            tail = fh.read()
        weights.update(f"{path.name}:{size}:".encode() + head + tail)
    return weights.hexdigest()[:16]


def identity(source: str, preset: str, config: Any, weights_folder: Path) -> dict[str, str]:
    """An index manifest's `encoder` entry: config hash plus weights fingerprint."""
    text = json.dumps(config, sort_keys=True, default=str)
    return {
        "source": source,
        "preset": preset,
        "config_hash": hashlib.sha256(text.encode()).hexdigest()[:16],
        "weights_fingerprint": weights_fingerprint(weights_folder),
    }


def text_identity(folder: Path) -> dict[str, str]:
    """A text encoder's identity: its encoding settings, model config and tokenizer files
    (hashed), and its weights."""
    config = read_text_config(folder)
    inner = folder / config.transformer
    model = read_json(inner / "config.json", what="config.json", expect=dict)
    tokenizer = {
        name: hashlib.sha256((inner / name).read_bytes()).hexdigest()
        for name in TOKENIZER_FILES
        if (inner / name).is_file()
    }
    document = {
        "text_encoder": config.to_dict(),
        "model": {k: v for k, v in model.items() if k not in _VOLATILE},
        "tokenizer": tokenizer,
    }
    return identity(str(folder), TEXT, document, inner)


def checkpoint_identity(path_or_hub_id: str | Path) -> dict[str, str]:
    """The identity of an encoder read without loading its weights (for ReT, the same value
    `ragvqa.index.manifest.encoder_identity` gives the loaded model)."""
    folder = resolve_source(path_or_hub_id)
    if folder_kind(folder) == TEXT:
        return text_identity(folder)
    _, config = read_retriever_config(folder)
    return identity(str(folder), config.preset, config.to_dict(), folder)


def load_encoder(
    path_or_hub_id: str | Path,
    *,
    device: str | None = None,
    dtype: Any = None,
    batch_size: int = 64,
    progress: bool | None = None,
) -> Any:
    """A `RetEncoder` or a `TextEncoder` for the folder, by what the folder is."""
    folder = resolve_source(path_or_hub_id)
    if folder_kind(folder) == TEXT:
        from ragvqa.models.text_encoder import TextEncoder

        return TextEncoder.from_pretrained(
            folder, device=device, dtype=dtype, batch_size=batch_size, progress=progress
        )
    from ragvqa.models.encode import RetEncoder

    return RetEncoder.from_pretrained(
        folder, device=device, dtype=dtype, batch_size=batch_size, progress=progress
    )
