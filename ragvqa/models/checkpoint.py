"""Saving and loading retrievers: ragvqa's own format and the official ReT checkpoints.

ragvqa's format (a folder): `config.json` (`{"model_type": "ragvqa-ret", "retriever": ...}`),
`model.safetensors`, and the tokenizer and image-processor files, so a saved model loads
offline. Official ReT checkpoints (`aimagelab/ReT-*`, HF `save_pretrained` of the original
`RetrieverModel`, `model_type: "retriever"`) are read without any code from the ReT repository:
their config is translated into a `RetrieverConfig` and their keys mapped one to one; a key
that is missing or unexpected is refused, listing the first few. Only safetensors are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragvqa.errors import UserError, first_line
from ragvqa.io import read_json, write_json
from ragvqa.models.config import (
    LAYER_STRATEGIES,
    M2KR_QUERY_INSTRUCTION,
    HeadConfig,
    RetrieverConfig,
)

OURS = "ragvqa-ret"
OFFICIAL = "retriever"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
SHOW = 5


def resolve_source(path_or_hub_id: str | Path) -> Path:
    """A local folder for a checkpoint: the folder itself, or a hub snapshot downloaded now."""
    local = Path(path_or_hub_id)
    if local.is_dir():
        return local
    name = str(path_or_hub_id)
    if local.exists() or name.count("/") != 1 or name.startswith((".", "/")):
        raise UserError("checkpoint folder not found", path=name)
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                repo_id=name,
                allow_patterns=["*.json", "*.safetensors", "*.txt", "merges.txt", "vocab.json"],
            )
        )
    except Exception as exc:  # offline, unknown repo, gated: one line for the user
        first = first_line(exc)
        raise UserError(
            f"cannot download checkpoint {name!r} from the hub ({first}); without internet, "
            "download it elsewhere and name the local folder instead: --set "
            "encoder.model=/path/to/folder for a pipeline's encoder, or the command's "
            "--encoder (index build) or --init (train) option"
        ) from None


def read_config(folder: Path) -> dict[str, Any]:
    config = read_json(folder / "config.json", what="config.json", missing=None, expect=dict)
    if config is None:
        raise UserError("not a checkpoint folder (no config.json)", path=str(folder))
    return config


def read_weights(folder: Path) -> dict[str, Any]:
    """All tensors of a safetensors checkpoint (single file or sharded with an index)."""
    from safetensors.torch import load_file

    single, index = folder / WEIGHTS, folder / WEIGHTS_INDEX
    sharded = not single.is_file() and index.is_file()
    listing = read_json(index, what=WEIGHTS_INDEX, expect=dict) if sharded else {}
    try:
        if single.is_file():
            return load_file(single)
        if index.is_file():
            shards = sorted(set(listing["weight_map"].values()))
            state: dict[str, Any] = {}
            for shard in shards:
                state.update(load_file(folder / shard))
            return state
    except Exception as exc:  # truncated or corrupt file
        raise UserError(f"cannot read weights ({exc})", path=str(folder)) from None
    raise UserError(
        f"no {WEIGHTS} (ragvqa reads safetensors only, never pickled weights)", path=str(folder)
    )


def with_shared_head(state: dict[str, Any], config: RetrieverConfig) -> dict[str, Any]:
    """A shared head is stored once (as query_head.*); the module has it under both names."""
    if not config.shared_heads:
        return state
    prefix = "query_head."
    shared = {
        "document_head." + k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)
    }
    return {**state, **shared}


# -- ragvqa's own format -------------------------------------------------------------------


def save_retriever(model: Any, folder: str | Path, processor: Any | None = None) -> Path:
    """Write config.json, model.safetensors (a shared head once) and the processor files."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().contiguous().cpu()
        for k, v in model.state_dict().items()
        if not (model.config.shared_heads and k.startswith("document_head."))
    }
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    document = {"model_type": OURS, "ragvqa_format": 1, "retriever": model.config.to_dict()}
    write_json(out / "config.json", document)
    if processor is not None:
        processor.save(out)
    return out


# -- official ReT checkpoints --------------------------------------------------------------


def _official_head(cfg: dict[str, Any], folder: Path) -> HeadConfig:
    strategy = cfg.get("layer_strategy", "clip_vit_b")
    if strategy not in LAYER_STRATEGIES:
        raise UserError(f"unknown layer_strategy {strategy!r}", path=str(folder / "config.json"))
    text_layers, vision_layers = LAYER_STRATEGIES[strategy]
    num_queries = int(cfg.get("num_queries", 32))
    return HeadConfig(
        text_layers=text_layers,
        vision_layers=vision_layers,
        hidden_size=int(cfg.get("hidden_size", 1024)),
        num_queries=num_queries,
        output_vectors=1 if cfg.get("use_pooler_features") else num_queries,
        proj_size=cfg.get("late_proj_output_size", 128) or None,
        input_gate_bias_prior=float(cfg.get("input_gate_bias_prior", 0.0)),
        forget_gate_bias_prior=float(cfg.get("forget_gate_bias_prior", 0.0)),
        use_tanh=bool(cfg.get("use_tanh", False)),
        dropout=float(cfg.get("dropout_p", 0.05)),
        attention_dropout=float(cfg.get("attention_dropout", 0.05)),
        activation=cfg.get("activation_fn", "gelu"),
    )


def _tower_dict(cfg: dict[str, Any] | None, what: str, folder: Path) -> dict[str, Any]:
    if not isinstance(cfg, dict):
        raise UserError(f"query_config has no {what}", path=str(folder / "config.json"))
    skip = {"model_type", "_name_or_path", "architectures", "transformers_version", "torch_dtype"}
    return {k: v for k, v in cfg.items() if k not in skip}


def official_config(document: dict[str, Any], folder: Path) -> RetrieverConfig:
    """Translate an official `RetrieverConfig` JSON into ragvqa's `RetrieverConfig`."""
    query = document.get("query_config")
    if not isinstance(query, dict):
        raise UserError("official config has no query_config", path=str(folder / "config.json"))
    if not (document.get("share_text_models", True) and document.get("share_vision_models", True)):
        raise UserError(
            "checkpoints with separate query and passage towers are not supported",
            path=str(folder / "config.json"),
        )
    shared = bool(document.get("share_query_passage_models", False))
    passage = document.get("passage_config") or query
    text = query.get("text_config")
    return RetrieverConfig(
        text_config=_tower_dict(text, "text_config", folder),
        vision_config=_tower_dict(query.get("vision_config"), "vision_config", folder),
        query=_official_head(query, folder),
        document=None if shared else _official_head(passage, folder),
        freeze_text=bool(query.get("is_text_frozen", True)),
        freeze_vision=bool(query.get("is_vision_frozen", True)),
        query_instruction=M2KR_QUERY_INSTRUCTION,
        processor_source=str((text or {}).get("_name_or_path", "")),
        preset="official-ret",
    )


def map_official_state(state: dict[str, Any], model: Any) -> dict[str, Any]:
    """Rename official keys to ragvqa's; drop blocks ragvqa does not build.

    query_model.text_model.[text_model.]X   -> text_model.X    (towers are stored once)
    query_model.vision_model.[vision_model.]X -> vision_model.X
    query_model.<head>.X   -> query_head.<head>.X
    passage_model.<head>.X -> document_head.<head>.X
    """
    towers = {"text_model": model.text_model, "vision_model": model.vision_model}
    tower_keys = {name: set(t.state_dict()) for name, t in towers.items()}
    out: dict[str, Any] = {}
    for key, value in state.items():
        side, _, rest = key.partition(".")
        tower, _, inner = rest.partition(".")
        if side == "query_model" and tower in towers:
            if inner.startswith(tower + ".") and inner not in tower_keys[tower]:
                inner = inner[len(tower) + 1 :]  # transformers 4 nested its towers one deeper
            if inner.endswith("position_ids") or unbuilt_block(inner, towers[tower]):
                continue
            out[f"{tower}.{inner}"] = value
        elif side == "query_model":
            out[f"query_head.{rest}"] = value
        elif side == "passage_model" and tower not in towers:
            out[f"document_head.{rest}"] = value
        else:
            out[key] = value  # reported as unexpected
    return with_shared_head(out, model.config)


def unbuilt_block(inner: str, tower: Any) -> bool:
    parts = inner.split(".")
    if len(parts) > 2 and parts[0] == "encoder" and parts[1] == "layers" and parts[2].isdigit():
        return int(parts[2]) >= len(tower.encoder.layers)
    return False


def _load_exact(model: Any, state: dict[str, Any], folder: Path) -> None:
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:SHOW])})")
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:SHOW])})"
            )
        problem = "checkpoint does not match its config: " + "; ".join(parts)
        raise UserError(problem, path=str(folder))
    own = model.state_dict()
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise UserError(
                f"shape of {key} is {tuple(value.shape)}, the config expects "
                f"{tuple(own[key].shape)}",
                path=str(folder),
            )
    model.load_state_dict(state, strict=True)


def read_retriever_config(path_or_hub_id: str | Path) -> tuple[Path, RetrieverConfig]:
    """(local folder, config) of a checkpoint, without reading its weights."""
    folder = resolve_source(path_or_hub_id)
    document = read_config(folder)
    kind = document.get("model_type")
    if kind == OURS:
        return folder, RetrieverConfig.from_dict(document["retriever"])
    if kind == OFFICIAL:
        return folder, official_config(document, folder)
    raise UserError(
        f"unknown model_type {kind!r} (expected {OURS!r} or an official ReT {OFFICIAL!r})",
        path=str(folder / "config.json"),
    )


def parse_dtype(name: str | None) -> Any:
    """A torch dtype from its name ("bfloat16", "float16", "float32"); None stays None (the
    device's default). An unknown name is a user error."""
    if not name:
        return None
    import torch

    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise UserError(f"unknown dtype {name!r} (float32, float16, bfloat16)")
    return value


def resolve_device_dtype(device: str | None, dtype: Any) -> tuple[str, Any]:
    """The device and dtype a retriever runs in: CUDA when available, and bfloat16 on CUDA,
    float32 elsewhere, unless given."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return device, dtype


def load_retriever(
    path_or_hub_id: str | Path, *, device: str | None = None, dtype: Any = None
) -> Any:
    """Load a retriever (ragvqa's format or an official ReT checkpoint), in eval mode.

    Args:
        path_or_hub_id: A local folder, or a hub id such as "aimagelab/ReT-CLIP-ViT-L-14".
        device: "cuda", "cpu", ...; default: CUDA when available.
        dtype: torch dtype; default: bfloat16 on CUDA, float32 on CPU.
    """
    from ragvqa.models.retriever import RetRetriever  # torch, transformers

    folder, config = read_retriever_config(path_or_hub_id)
    model = RetRetriever(config)
    if read_config(folder).get("model_type") == OURS:
        _load_exact(model, with_shared_head(read_weights(folder), config), folder)
    else:
        _load_exact(model, map_official_state(read_weights(folder), model), folder)
    device, dtype = resolve_device_dtype(device, dtype)
    model.source = str(folder)
    return model.to(device=device, dtype=dtype).eval()
