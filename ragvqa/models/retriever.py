"""The ReT family retriever: shared CLIP-like towers and one or two recurrent heads.

`RetRetriever.features(side, ...)` is the contract other code relies on: it runs each tower
once, takes every tapped layer from that one pass, runs the head of `side` over the taps and
returns L2-normalised vectors [batch, n_vectors, dim].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ragvqa.errors import UserError
from ragvqa.models.cell import RetCell
from ragvqa.models.config import HeadConfig, RetrieverConfig

SIDES = ("query", "document")


def used_layers(config: RetrieverConfig) -> tuple[int, int]:
    """How many blocks of each tower the heads read: the last tapped index + 1.

    Blocks after that are never read, so ragvqa does not build or run them (for example the
    last block of ViT-L/14 under the `clip_vit_l` taps).
    """
    heads = [config.query, config.document or config.query]
    return (
        max(max(h.text_layers) for h in heads) + 1,
        max(max(h.vision_layers) for h in heads) + 1,
    )


class RetHead(nn.Module):
    """Per-step adapters (tower width -> H), the recurrent cell, and the output projection."""

    def __init__(self, config: HeadConfig, text_width: int, vision_width: int):
        super().__init__()
        self.config = config
        steps = len(config.text_layers)
        dim = config.hidden_size
        self.text_adapter = nn.ModuleList(nn.Linear(text_width, dim) for _ in range(steps))
        self.vision_adapter = nn.ModuleList(nn.Linear(vision_width, dim) for _ in range(steps))
        self.ret_cell = RetCell(config)
        self.late_proj = (
            nn.Linear(dim, config.proj_size, bias=False) if config.proj_size else nn.Identity()
        )

    def forward(
        self,
        text_states: tuple[torch.Tensor, ...],
        vision_states: tuple[torch.Tensor, ...],
        attention_mask: torch.Tensor | None,
        text_mask: torch.Tensor | None,
        image_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Unnormalised output vectors [B, n_vectors, dim] from the towers' hidden states."""
        state = None
        steps = zip(
            self.config.text_layers,
            self.config.vision_layers,
            self.text_adapter,
            self.vision_adapter,
            strict=True,
        )
        for t_layer, v_layer, t_adapt, v_adapt in steps:
            state = self.ret_cell(
                state,
                t_adapt(text_states[t_layer]),
                attention_mask,
                v_adapt(vision_states[v_layer]),
                text_mask,
                image_mask,
            )
        if self.config.output_vectors == 1:
            state = state.mean(dim=1, keepdim=True)
        return self.late_proj(state)


class RetRetriever(nn.Module):
    """Towers + heads. Build from a config (random weights) or load with `load_retriever`."""

    def __init__(self, config: RetrieverConfig):
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel

        config.validate()
        self.config = config
        n_text, n_vision = used_layers(config)
        text_config = CLIPTextConfig(**config.text_config)
        vision_config = CLIPVisionConfig(**config.vision_config)
        towers = (("text", text_config, n_text), ("vision", vision_config, n_vision))
        for name, tower, needed in towers:
            if needed > tower.num_hidden_layers:
                raise UserError(
                    f"a head taps {name} layer {needed - 1}, the {name} tower has "
                    f"{tower.num_hidden_layers} layers"
                )
            # blocks after the last tapped one are never read: they are not built at all
            tower.num_hidden_layers = needed
        self.text_model = CLIPTextModel(text_config)
        self.vision_model = CLIPVisionModel(vision_config)
        text_width, vision_width = text_config.hidden_size, vision_config.hidden_size
        self.query_head = RetHead(config.query, text_width, vision_width)
        if config.document is None:
            self.document_head = self.query_head
        else:
            self.document_head = RetHead(config.document, text_width, vision_width)
        self.set_frozen(config.freeze_text, config.freeze_vision)

    # -- towers ---------------------------------------------------------------------------
    def set_frozen(self, text: bool, vision: bool) -> None:
        """Freeze (no gradients, always eval mode) or unfreeze each tower."""
        self._frozen = {"text": text, "vision": vision}
        self.text_model.requires_grad_(not text)
        self.vision_model.requires_grad_(not vision)
        # the towers' final norms only feed their pooled outputs, which ReT never reads
        self.text_model.final_layer_norm.requires_grad_(False)
        self.vision_model.post_layernorm.requires_grad_(False)

    def train(self, mode: bool = True) -> RetRetriever:
        super().train(mode)
        if self._frozen["text"]:
            self.text_model.eval()
        if self._frozen["vision"]:
            self.vision_model.eval()
        return self

    def tower_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        pixel_values: torch.Tensor,
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """hidden_states[1:] of each tower (one pass each; index 0 = first block's output)."""
        text = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        vision = self.vision_model(pixel_values=pixel_values, output_hidden_states=True)
        return tuple(text.hidden_states[1:]), tuple(vision.hidden_states[1:])

    # -- the contract -----------------------------------------------------------------------
    def head(self, side: str) -> RetHead:
        if side not in SIDES:
            raise ValueError(f"side must be 'query' or 'document', got {side!r}")
        return self.query_head if side == "query" else self.document_head

    def features(
        self,
        side: str,
        *,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """L2-normalised vectors [batch, n_vectors, dim] of one side.

        `text_mask` / `image_mask` ([batch], 1 = present) switch a missing modality off in the
        gates; the missing input itself is an empty string / a black image.
        """
        head = self.head(side)
        if image_mask is not None and not bool(image_mask.any()):
            # no image in the batch: the vision gates are 0, so the vision tower's output cannot
            # change the result; skip it (text-only KB sections cost a text pass only)
            text = self.text_model(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
            )
            text_states = tuple(text.hidden_states[1:])
            blank = text_states[0].new_zeros(
                (input_ids.shape[0], 1, self.vision_model.config.hidden_size)
            )
            vision_states = (blank,) * len(self.vision_model.encoder.layers)
        else:
            text_states, vision_states = self.tower_states(input_ids, attention_mask, pixel_values)
        out = head(text_states, vision_states, attention_mask, text_mask, image_mask)
        return F.normalize(out, p=2, dim=-1)

    def forward(
        self, query: dict[str, torch.Tensor], document: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both sides in one call (what training needs, and what DistributedDataParallel wraps):
        `features("query", **query)` and `features("document", **document)`."""
        return self.features("query", **query), self.features("document", **document)

    @property
    def device(self) -> torch.device:
        return self.query_head.ret_cell.query_hidden_states.device

    @property
    def dtype(self) -> torch.dtype:
        return self.query_head.ret_cell.query_hidden_states.dtype
