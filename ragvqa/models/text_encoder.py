"""Text encoders in the sentence-transformers folder format, run with plain transformers.

A sentence-transformers folder says how it is meant to be used: `modules.json` lists its
modules (a Transformer, a Pooling, optionally a Normalize), `1_Pooling/config.json` the pooling
mode(s) (cls, mean, max, mean_sqrt_len_tokens, weightedmean, lasttoken; several are
concatenated), `sentence_bert_config.json` the maximum sequence length and lower-casing, and
`config_sentence_transformers.json` optional prompts ("query", and "document" / "passage" /
"corpus"). `read_text_config` reads all of it without loading weights; `TextEncoder` encodes
with transformers' `AutoModel` / `AutoTokenizer` exactly as sentence-transformers defines it (no
sentence-transformers dependency). Queries are encoded from the question text only (the image
is ignored: question-only text retrieval); documents from the text the index's document
template made. Other module types (Dense, Router, ...) are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError, first_line
from ragvqa.io import read_json
from ragvqa.models.encode import EncodeStats
from ragvqa.progress import ProgressBar
from ragvqa.types import Passage, VQAQuery

MODULES = "modules.json"
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_LEGACY_MODES = {  # sentence-transformers < 6 wrote one boolean per mode
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_DOCUMENT_PROMPTS = ("document", "passage", "corpus")  # sentence-transformers' order
SBERT_CONFIGS = ("sentence_bert_config.json", "sentence_roberta_config.json")


@dataclass(frozen=True)
class TextEncoderConfig:
    """How a sentence-transformers folder encodes, read from its own files."""

    transformer: str  # the Transformer module's sub-folder ("" for the folder itself)
    pooling: tuple[str, ...]
    normalize: bool
    hidden_size: int
    max_seq_length: int | None = None
    lower_case: bool = False
    query_prompt: str = ""
    document_prompt: str = ""

    @property
    def output_dim(self) -> int:
        return self.hidden_size * len(self.pooling)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json(path: Path) -> Any:
    return read_json(path, what="file of the sentence-transformers folder")


def _pooling_modes(cfg: dict[str, Any], path: Path) -> tuple[str, ...]:
    mode = cfg.get("pooling_mode")
    if mode is None:
        modes = tuple(name for key, name in _LEGACY_MODES.items() if cfg.get(key))
    else:
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown or not modes:
        raise UserError(
            f"pooling mode {unknown or 'missing'} (known: {', '.join(POOLING_MODES)})",
            path=str(path),
        )
    return modes


def read_text_config(folder: str | Path) -> TextEncoderConfig:
    """A sentence-transformers folder's encoding settings, without reading its weights."""
    folder = Path(folder)
    modules = _json(folder / MODULES)
    kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules}
    unsupported = sorted(set(kinds) - {"Transformer", "Pooling", "Normalize"})
    if unsupported or "Transformer" not in kinds or "Pooling" not in kinds:
        raise UserError(
            "ragvqa reads sentence-transformers folders made of Transformer, Pooling and "
            f"optional Normalize modules; this one has {', '.join(kinds) or 'none'}",
            path=str(folder / MODULES),
        )
    transformer = str(kinds["Transformer"].get("path", ""))
    pooling_path = folder / str(kinds["Pooling"].get("path", "")) / "config.json"
    pooling = _json(pooling_path)
    sbert = next(
        (folder / transformer / n for n in SBERT_CONFIGS if (folder / transformer / n).is_file()),
        None,
    )
    sbert_cfg = _json(sbert) if sbert else {}
    prompts = {}
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        prompts = _json(st_config).get("prompts") or {}
    document_prompt = next((prompts[k] for k in _DOCUMENT_PROMPTS if prompts.get(k)), "")
    if pooling.get("include_prompt") is False and (prompts.get("query") or document_prompt):
        raise UserError("pooling without the prompt tokens is not supported", path=str(folder))
    hidden = pooling.get("embedding_dimension", pooling.get("word_embedding_dimension"))
    model_hidden = _json(folder / transformer / "config.json").get("hidden_size")
    return TextEncoderConfig(
        transformer=transformer,
        pooling=_pooling_modes(pooling, pooling_path),
        normalize="Normalize" in kinds,
        hidden_size=int(hidden or model_hidden),
        max_seq_length=sbert_cfg.get("max_seq_length"),
        lower_case=bool(sbert_cfg.get("do_lower_case", False)),
        query_prompt=str(prompts.get("query") or ""),
        document_prompt=str(document_prompt),
    )


def pool(hidden: Any, mask: Any, modes: Sequence[str]) -> Any:
    """Sentence embeddings [B, dim x modes] from token states [B, T, dim] and the attention
    mask [B, T], as sentence-transformers' Pooling module computes them (padding on either
    side)."""
    import torch

    acc = torch.float32 if hidden.dtype in (torch.float16, torch.bfloat16) else hidden.dtype
    m = mask.unsqueeze(-1).to(acc)
    first = mask.to(torch.int32).argmax(dim=1)  # the first real token (left padding)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[torch.arange(len(hidden)), first])
        elif mode == "max":
            out.append(hidden.masked_fill(m == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            count = m.sum(dim=1).clamp(min=1e-9)
            total = (hidden.to(acc) * m).sum(dim=1)
            out.append((total / (count if mode == "mean" else count.sqrt())).to(hidden.dtype))
        elif mode == "weightedmean":
            positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=acc)
            w = m * (positions.view(1, -1, 1) - first.view(-1, 1, 1))
            total = (hidden.to(acc) * w).sum(dim=1)
            out.append((total / w.sum(dim=1).clamp(min=1e-9)).to(hidden.dtype))
        elif mode == "lasttoken":
            last = hidden.shape[1] - 1 - mask.flip(1).to(torch.int32).argmax(dim=1)
            out.append(hidden[torch.arange(len(hidden)), last])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}")
    return torch.cat(out, dim=-1)


class TextEncoder:
    """Encodes questions and passages with a sentence-transformers-format text model; the same
    interface as `RetEncoder` (one vector per input: arrays [N, 1, dim])."""

    kind = "text"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: TextEncoderConfig,
        *,
        source: str = "",
        batch_size: int = 64,
        progress: bool | None = None,
    ):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.source, self.batch_size, self.progress = source, batch_size, progress
        self.stats = EncodeStats()  # no images are read: the counts stay 0
        self.last_present: Any = None  # per input of the last call: all True (no image needed)
        self.max_length = config.max_seq_length or min(
            int(getattr(tokenizer, "model_max_length", 512) or 512),
            int(getattr(model.config, "max_position_embeddings", 512) or 512),
        )

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 64,
        progress: bool | None = None,
    ) -> TextEncoder:
        """Load a sentence-transformers folder (safetensors weights only, no remote code)."""
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from ragvqa.models.checkpoint import resolve_device_dtype

        folder = Path(folder)
        config = read_text_config(folder)
        inner = folder / config.transformer
        if not any(inner.glob("*.safetensors")):
            raise UserError(
                "no model.safetensors (ragvqa reads safetensors only, never pickled weights)",
                path=str(inner),
            )
        device, dtype = resolve_device_dtype(device, dtype)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # stderr keeps ragvqa's own bars only
        try:
            tokenizer = AutoTokenizer.from_pretrained(inner)
            model = AutoModel.from_pretrained(inner, dtype=dtype, use_safetensors=True)
        except (OSError, ValueError) as exc:
            first = first_line(exc)
            raise UserError(f"cannot load the text encoder ({first})", path=str(inner)) from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        model = model.to(device).eval()
        return cls(
            model, tokenizer, config, source=str(folder), batch_size=batch_size, progress=progress
        )

    def encode_queries(self, queries: Sequence[VQAQuery]) -> Any:
        """float32 array [N, 1, dim] from the question texts (images are not read)."""
        texts = [self.config.query_prompt + q.question for q in queries]
        return self._encode("queries", texts)

    def encode_documents(self, passages: Sequence[Passage]) -> Any:
        """float32 array [N, 1, dim] from the passages' texts (the index's document template
        has already been applied by the caller)."""
        texts = [self.config.document_prompt + p.text for p in passages]
        return self._encode("documents", texts)

    def encode_texts(self, texts: Sequence[str]) -> Any:
        """float32 array [N, dim] for plain texts (no prompt added)."""
        return self._encode("texts", list(texts))[:, 0]

    def _encode(self, what: str, texts: list[str]) -> Any:
        import numpy as np
        import torch

        out = np.zeros((len(texts), 1, self.config.output_dim), dtype=np.float32)
        self.last_present = np.ones(len(texts), dtype=np.float32)
        if not texts:
            return out
        if self.config.lower_case:
            texts = [t.lower() for t in texts]
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))  # little padding
        show = self.progress if self.progress is not None else len(texts) > 256
        device = self.model.device
        with ProgressBar(f"encoding {what}", len(texts), enabled=show) as bar:
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                features = self.tokenizer(
                    [texts[i] for i in batch],
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                features = {k: v.to(device) for k, v in features.items()}
                with torch.inference_mode():
                    hidden = self.model(**features).last_hidden_state
                    vectors = pool(hidden, features["attention_mask"], self.config.pooling)
                    vectors = vectors.float()
                    if self.config.normalize:
                        vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
                out[batch, 0] = vectors.cpu().numpy()
                bar.advance(len(batch))
        return out
