"""Configuration of the ReT retriever family, and its named presets.

One family covers ReT (v1) and ReT-2 (see docs/retriever.md): a pair of HF CLIP-like towers
(text, vision) read at several layers, and one or two recurrent heads (query, document) that
turn those layers into `output_vectors` L2-normalised vectors. Configs are plain dataclasses,
saved as JSON next to the weights; nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ragvqa.errors import UserError, did_you_mean

# Layer taps of the official ReT checkpoints: indices into hidden_states[1:] of each tower
# (0 = the output of the first block), one recurrent step per (text, vision) pair.
LAYER_STRATEGIES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "clip_vit_b": (tuple(range(12)), tuple(range(12))),
    "clip_vit_l": (tuple(range(12)), tuple(range(0, 24, 2))),
    "openclip_vit_h": (
        tuple(range(1, 24, 2)),
        (0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 31),
    ),
    "openclip_vit_g": (
        (*range(0, 30, 2), 31),
        tuple(range(2, 48, 3)),
    ),
}

M2KR_QUERY_INSTRUCTION = (
    "Retrieve documents that provide an answer to the question alongside the image:"
)


@dataclass(frozen=True)
class HeadConfig:
    """One recurrent head: adapters, the gated cell, the output projection.

    Attributes:
        text_layers, vision_layers: Tapped layers (same length: one step per pair).
        hidden_size: Width H of the latent state (heads = H / head_dim).
        num_queries: Latent tokens carried through the recurrence.
        output_vectors: 1 (mean of the latent tokens: one vector for dense search) or
            `num_queries` (all tokens, for late interaction).
        proj_size: Output dimension of the final projection (no bias); None keeps H.
    """

    text_layers: tuple[int, ...]
    vision_layers: tuple[int, ...]
    hidden_size: int = 1024
    head_dim: int = 64
    num_queries: int = 32
    output_vectors: int = 32
    proj_size: int | None = 128
    input_gate_bias_prior: float = 0.0
    forget_gate_bias_prior: float = 0.0
    use_tanh: bool = False
    dropout: float = 0.05
    attention_dropout: float = 0.05
    activation: str = "gelu"

    @property
    def num_heads(self) -> int:
        return self.hidden_size // self.head_dim

    @property
    def output_dim(self) -> int:
        return self.proj_size or self.hidden_size

    def validate(self) -> None:
        if len(self.text_layers) != len(self.vision_layers) or not self.text_layers:
            raise UserError("text_layers and vision_layers must be non-empty and equally long")
        if self.hidden_size % self.head_dim:
            raise UserError(f"hidden_size {self.hidden_size} is not a multiple of {self.head_dim}")
        if self.output_vectors not in (1, self.num_queries):
            raise UserError(f"output_vectors must be 1 or num_queries ({self.num_queries})")
        if self.num_queries > self.hidden_size:
            raise UserError("num_queries cannot exceed hidden_size (sinusoidal state codes)")
        if self.activation not in ("gelu", "relu"):
            raise UserError(f"unknown activation {self.activation!r} (gelu or relu)")


@dataclass(frozen=True)
class RetrieverConfig:
    """A whole retriever: towers, heads, and how inputs are prepared.

    Attributes:
        text_config, vision_config: HF `CLIPTextConfig` / `CLIPVisionConfig` as dicts.
        query: The query head. document: the document head, or None when both sides share
            one head (ReT-2).
        query_instruction: Prefixed to every query text ("<instruction> <question>").
        processor_source: Where the tokenizer and image processor come from when they are not
            saved next to the weights (a hub id or folder).
    """

    text_config: dict[str, Any]
    vision_config: dict[str, Any]
    query: HeadConfig
    document: HeadConfig | None = None
    freeze_text: bool = True
    freeze_vision: bool = True
    query_instruction: str = M2KR_QUERY_INSTRUCTION
    processor_source: str = ""
    preset: str = ""
    max_text_tokens: int = 77
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shared_heads(self) -> bool:
        return self.document is None

    def head(self, side: str) -> HeadConfig:
        if side == "query":
            return self.query
        if side == "document":
            return self.query if self.document is None else self.document
        raise ValueError(f"side must be 'query' or 'document', got {side!r}")

    def validate(self) -> None:
        for head in (self.query, self.document):
            if head is not None:
                head.validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrieverConfig:
        data = dict(data)
        for key in ("query", "document"):
            if data.get(key) is not None:
                head = dict(data[key])
                head["text_layers"] = tuple(head["text_layers"])
                head["vision_layers"] = tuple(head["vision_layers"])
                data[key] = HeadConfig(**head)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown retriever config keys: {', '.join(unknown[:5])}")
        return cls(**data)


def _clip_configs(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """HF CLIP tower configs at the real sizes of public checkpoints (architecture only)."""
    sizes = {
        "openai/clip-vit-base-patch32": (512, 2048, 12, 8, 768, 3072, 12, 12, 32, 224),
        "openai/clip-vit-large-patch14": (768, 3072, 12, 12, 1024, 4096, 24, 16, 14, 224),
    }
    t_h, t_i, t_l, t_a, v_h, v_i, v_l, v_a, patch, image = sizes[name]
    text = {
        "hidden_size": t_h,
        "intermediate_size": t_i,
        "num_hidden_layers": t_l,
        "num_attention_heads": t_a,
        "max_position_embeddings": 77,
        "vocab_size": 49408,
        "projection_dim": 768 if v_h == 1024 else 512,
        "hidden_act": "quick_gelu",
    }
    vision = {
        "hidden_size": v_h,
        "intermediate_size": v_i,
        "num_hidden_layers": v_l,
        "num_attention_heads": v_a,
        "patch_size": patch,
        "image_size": image,
        "projection_dim": 768 if v_h == 1024 else 512,
        "hidden_act": "quick_gelu",
    }
    return text, vision


def _ret_v1(backbone: str, strategy: str) -> RetrieverConfig:
    text, vision = _clip_configs(backbone)
    head = HeadConfig(*LAYER_STRATEGIES[strategy])
    return RetrieverConfig(text, vision, query=head, document=head, processor_source=backbone)


def _ret2(backbone: str, text_layers, vision_layers, hidden: int, queries: int) -> RetrieverConfig:
    text, vision = _clip_configs(backbone)
    head = HeadConfig(
        tuple(text_layers),
        tuple(vision_layers),
        hidden_size=hidden,
        num_queries=queries,
        output_vectors=1,
        proj_size=256,
    )
    return RetrieverConfig(text, vision, query=head, document=None, processor_source=backbone)


# Named presets. ReT v1 presets mirror the official checkpoints' architecture; ReT-2 presets are
# ragvqa's configuration of the ReT-2 ideas (one shared head, three taps per tower: early,
# middle, late; one pooled output vector), to be trained with `ragvqa train retriever`.
PRESETS: dict[str, Any] = {
    "ret-v1-vit-b32": lambda: _ret_v1("openai/clip-vit-base-patch32", "clip_vit_b"),
    "ret-v1-vit-l14": lambda: _ret_v1("openai/clip-vit-large-patch14", "clip_vit_l"),
    "ret2-vit-b32": lambda: _ret2(
        "openai/clip-vit-base-patch32", (3, 7, 11), (3, 7, 11), hidden=512, queries=16
    ),
    "ret2-vit-l14": lambda: _ret2(
        "openai/clip-vit-large-patch14", (3, 7, 11), (7, 15, 23), hidden=1024, queries=32
    ),
}


def preset(name: str, **overrides: Any) -> RetrieverConfig:
    """A named preset, with top-level fields replaced by `overrides`."""
    if name not in PRESETS:
        hint = did_you_mean(name, PRESETS)
        raise UserError(f"unknown retriever preset {name!r} (known: {', '.join(PRESETS)}){hint}")
    return replace(PRESETS[name](), preset=name, **overrides)
