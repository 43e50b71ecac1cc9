"""The model a training run starts from: a checkpoint (--init) or a preset with pretrained (or
random) CLIP towers, frozen or trainable, and its optimizer parameter groups.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ragvqa.errors import UserError, first_line
from ragvqa.models.checkpoint import load_retriever, unbuilt_block
from ragvqa.models.config import preset
from ragvqa.models.processor import RetProcessor
from ragvqa.models.retriever import RetRetriever
from ragvqa.train.config import TrainConfig


def init_towers(model: Any, source: str) -> None:
    """Copy pretrained CLIP tower weights (a hub id or folder) into the model's towers."""
    from transformers import CLIPTextModel, CLIPVisionModel

    try:
        pretrained = {
            "text": CLIPTextModel.from_pretrained(source).state_dict(),
            "vision": CLIPVisionModel.from_pretrained(source).state_dict(),
        }
    except OSError as exc:
        first = first_line(exc)
        raise UserError(
            f"cannot load CLIP towers from {source!r} ({first}); pass --towers DIR (a local "
            "CLIP checkpoint) or --towers random"
        ) from None
    for name, tower in (("text", model.text_model), ("vision", model.vision_model)):
        state = {k: v for k, v in pretrained[name].items() if not unbuilt_block(k, tower)}
        tower.load_state_dict(state, strict=True)


def build_model(cfg: TrainConfig) -> tuple[Any, Any]:
    """(model, processor) from --init (a checkpoint) or --preset (+ pretrained towers)."""
    if bool(cfg.init) == bool(cfg.preset):
        raise UserError("give exactly one of --init CHECKPOINT or --preset NAME")
    if cfg.init:
        model = load_retriever(cfg.init, device="cpu", dtype=torch.float32)
        processor = RetProcessor.load(model.source, model.config.processor_source)
    else:
        config = preset(cfg.preset)
        model = RetRetriever(config)
        source = cfg.towers or config.processor_source
        if source != "random":
            init_towers(model, source)
        processor_from = source if source != "random" else config.processor_source
        processor = RetProcessor.load(processor_from, config.processor_source)
    processor.check_fits(model)
    model.config = replace(
        model.config,
        freeze_text=not cfg.train_text_tower,
        freeze_vision=not cfg.train_vision_tower,
    )
    model.set_frozen(not cfg.train_text_tower, not cfg.train_vision_tower)
    return model, processor


def param_groups(model: Any, cfg: TrainConfig, extra: list) -> list[dict]:
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        tower = name.startswith(("text_model.", "vision_model."))
        decay = param.ndim >= 2 and "query_hidden_states" not in name
        groups.setdefault((tower, decay), []).append(param)
    out = [
        {
            "params": params,
            "lr": cfg.tower_lr if tower else cfg.lr,
            "weight_decay": cfg.weight_decay if decay else 0.0,
        }
        for (tower, decay), params in sorted(groups.items())
    ]
    if extra:
        out.append({"params": extra, "lr": cfg.lr, "weight_decay": 0.0})
    return out
