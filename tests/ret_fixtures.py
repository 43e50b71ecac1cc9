"""Tiny ReT checkpoints in the real formats, and an independent reference forward pass.

`write_official_checkpoint` writes what `RetrieverModel.save_pretrained` of the original ReT
code writes (ret.md): config.json with `model_type: "retriever"` and nested RetConfigs, and a
model.safetensors whose towers are stored once under `query_model.*` with transformers 4's
extra nesting (`query_model.text_model.text_model.*`). `reference_features` recomputes the
official forward pass straight from those tensors with torch's own nn.MultiheadAttention and
the official additive masks, sharing no code with ragvqa's cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ragvqa.fixtures.models import TEXT, VISION, clip_tokenizer, image_processor  # noqa: F401


def official_tiny(
    text_layers: int = 12, vision_layers: int = 12, shared: bool = False, pooler: bool = False
) -> dict:
    """An official-format config.json document for tiny towers under `clip_vit_b` taps."""

    def ret(text_cfg, vision_cfg):
        return {
            "model_type": "ret",
            "text_config": text_cfg,
            "vision_config": vision_cfg,
            "layer_strategy": "clip_vit_b",
            "hidden_size": 64,
            "num_queries": 4,
            "late_proj_output_size": 16,
            "use_pooler_features": pooler,
            "use_tanh": False,
            "input_gate_bias_prior": 0.5,
            "forget_gate_bias_prior": -0.5,
            "dropout_p": 0.05,
            "attention_dropout": 0.05,
            "activation_fn": "gelu",
            "is_text_frozen": True,
            "is_vision_frozen": True,
        }

    text = {
        **TEXT,
        "num_hidden_layers": text_layers,
        "model_type": "clip_text_model",
        "_name_or_path": "openai/clip-vit-base-patch32",
    }
    vision = {
        **VISION,
        "num_hidden_layers": vision_layers,
        "model_type": "clip_vision_model",
        "_name_or_path": "openai/clip-vit-base-patch32",
    }
    return {
        "model_type": "retriever",
        "architectures": ["RetrieverModel"],
        "query_config": ret(text, vision),
        "passage_config": ret(text, vision),
        "fg_loss": True,
        "simmetric_loss": True,
        "share_query_passage_models": shared,
        "share_text_models": True,
        "share_vision_models": True,
    }


def _head_tensors(prefix: str, cfg: dict, text_w: int, vision_w: int, gen) -> dict:
    h, q, steps = cfg["hidden_size"], cfg["num_queries"], 12
    r = lambda *shape: torch.randn(*shape, generator=gen) * 0.2  # noqa: E731
    t = {}
    for i in range(steps):
        t[f"{prefix}text_adapter.{i}.weight"], t[f"{prefix}text_adapter.{i}.bias"] = (
            r(h, text_w),
            r(h),
        )
        t[f"{prefix}vision_adapter.{i}.weight"] = r(h, vision_w)
        t[f"{prefix}vision_adapter.{i}.bias"] = r(h)
    c = prefix + "ret_cell."
    t[c + "query_hidden_states"] = r(1, q, h)
    position = torch.arange(h).unsqueeze(1)
    div = torch.exp(torch.arange(0, h, 2) * (-torch.log(torch.tensor(10000.0)) / h))
    pe = torch.zeros(1, h, h)
    pe[..., 0::2], pe[..., 1::2] = torch.sin(position * div), torch.cos(position * div)
    t[c + "query_state_ids"] = pe[:, :q, :].contiguous()
    t[c + "input_gate_bias_prior"] = torch.tensor(cfg["input_gate_bias_prior"])
    t[c + "forget_gate_bias_prior"] = torch.tensor(cfg["forget_gate_bias_prior"])
    t[c + "sa.in_proj_weight"], t[c + "sa.in_proj_bias"] = r(3 * h, h), r(3 * h)
    t[c + "sa.out_proj.weight"], t[c + "sa.out_proj.bias"] = r(h, h), r(h)
    for xa in ("text_xa", "vision_xa"):
        t[c + f"{xa}.in_proj_weight"], t[c + f"{xa}.out_proj.weight"] = r(3 * h, h), r(h, h)
    t[c + "mlp.0.weight"], t[c + "mlp.0.bias"] = r(4 * h, h), r(4 * h)
    t[c + "mlp.3.weight"], t[c + "mlp.3.bias"] = r(h, 4 * h), r(h)
    for g in (
        "text_input_gate_w",
        "vision_input_gate_w",
        "text_forget_gate_w",
        "vision_forget_gate_w",
    ):
        t[c + f"{g}.weight"], t[c + f"{g}.bias"] = r(h, h), r(h)
    for ln in ("xa_ln", "text_ln", "vision_ln", "sa_ln", "mlp_ln"):
        t[c + f"{ln}.weight"], t[c + f"{ln}.bias"] = 1 + r(h), r(h)
    t[prefix + "late_proj.weight"] = r(cfg["late_proj_output_size"], h)
    return t


def write_official_checkpoint(folder: Path, document: dict, seed: int = 0) -> dict:
    """Write config.json + model.safetensors in the official layout; returns the tensors."""
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    q = document["query_config"]
    strip = lambda d: {k: v for k, v in d.items() if k not in ("model_type", "_name_or_path")}  # noqa: E731
    text = CLIPTextModel(CLIPTextConfig(**strip(q["text_config"])))
    vision = CLIPVisionModel(CLIPVisionConfig(**strip(q["vision_config"])))
    state = {f"query_model.text_model.text_model.{k}": v for k, v in text.state_dict().items()}
    state |= {
        f"query_model.vision_model.vision_model.{k}": v for k, v in vision.state_dict().items()
    }
    state |= _head_tensors("query_model.", q, TEXT["hidden_size"], VISION["hidden_size"], gen)
    if not document["share_query_passage_models"]:
        state |= _head_tensors(
            "passage_model.",
            document["passage_config"],
            TEXT["hidden_size"],
            VISION["hidden_size"],
            gen,
        )
    state = {k: v.contiguous() for k, v in state.items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(document, indent=2))
    return state


def reference_features(
    state: dict,
    document: dict,
    side: str,
    input_ids,
    attention_mask,
    pixel_values,
    text_mask=None,
    image_mask=None,
) -> torch.Tensor:
    """The official ReT forward pass, recomputed from the raw checkpoint tensors."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel

    shared = document["share_query_passage_models"]
    p = "query_model." if side == "query" or shared else "passage_model."
    cfg = document["query_config"] if p == "query_model." else document["passage_config"]
    strip = lambda d: {k: v for k, v in d.items() if k not in ("model_type", "_name_or_path")}  # noqa: E731
    q_cfg = document["query_config"]
    text = CLIPTextModel(CLIPTextConfig(**strip(q_cfg["text_config"]))).eval()
    vision = CLIPVisionModel(CLIPVisionConfig(**strip(q_cfg["vision_config"]))).eval()
    tp, vp = "query_model.text_model.text_model.", "query_model.vision_model.vision_model."
    text.load_state_dict({k[len(tp) :]: v for k, v in state.items() if k.startswith(tp)})
    vision.load_state_dict({k[len(vp) :]: v for k, v in state.items() if k.startswith(vp)})
    with torch.no_grad():
        th = text(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        ).hidden_states[1:]
        vh = vision(pixel_values=pixel_values, output_hidden_states=True).hidden_states[1:]
        return _reference_head(state, p, cfg, th, vh, attention_mask, text_mask, image_mask)


def _mha(state, name, h, bias):
    m = nn.MultiheadAttention(h, h // 64, batch_first=True, bias=bias).eval()
    sd = {
        "in_proj_weight": state[name + ".in_proj_weight"],
        "out_proj.weight": state[name + ".out_proj.weight"],
    }
    if bias:
        sd["in_proj_bias"] = state[name + ".in_proj_bias"]
        sd["out_proj.bias"] = state[name + ".out_proj.bias"]
    m.load_state_dict(sd)
    return m


def _reference_head(state, p, cfg, th, vh, attention_mask, text_mask, image_mask):
    h, nq = cfg["hidden_size"], cfg["num_queries"]
    heads = h // 64
    c = p + "ret_cell."
    w = lambda n: state[c + n]  # noqa: E731
    lin = lambda x, n: F.linear(x, w(n + ".weight"), w(n + ".bias"))  # noqa: E731
    ln = lambda x, n: F.layer_norm(x, (h,), w(n + ".weight"), w(n + ".bias"))  # noqa: E731
    sa, txa, vxa = (
        _mha(state, c + "sa", h, True),
        _mha(state, c + "text_xa", h, False),
        _mha(state, c + "vision_xa", h, False),
    )
    n = th[0].shape[0]
    add_mask = torch.where(attention_mask.bool(), 0.0, torch.finfo(torch.float32).min)
    add_mask = add_mask.unsqueeze(1).expand(n, nq, -1).repeat_interleave(heads, dim=0)
    taps = list(range(12))  # clip_vit_b
    q = None
    for i, (tl, vl) in enumerate(zip(taps, taps, strict=True)):
        tkv = F.linear(
            th[tl], state[f"{p}text_adapter.{i}.weight"], state[f"{p}text_adapter.{i}.bias"]
        )
        vkv = F.linear(
            vh[vl], state[f"{p}vision_adapter.{i}.weight"], state[f"{p}vision_adapter.{i}.bias"]
        )
        x = (w("query_hidden_states").expand(n, -1, -1) if q is None else q) + w("query_state_ids")
        residual = x
        z = ln(x, "xa_ln")
        residual = residual + sa(z, z, z, need_weights=False)[0]
        tkv = ln(tkv, "text_ln")
        ht = txa(z, tkv, tkv, attn_mask=add_mask, need_weights=False)[0]
        vkv = ln(vkv, "vision_ln")
        hv = vxa(z, vkv, vkv, need_weights=False)[0]
        it = torch.sigmoid(lin(ht, "text_input_gate_w") + w("input_gate_bias_prior"))
        ft = lin(ht, "text_forget_gate_w")
        if text_mask is not None:
            it, ft = it * text_mask[:, None, None], ft * text_mask[:, None, None]
        iv = torch.sigmoid(lin(hv, "vision_input_gate_w") + w("input_gate_bias_prior"))
        fv = lin(hv, "vision_forget_gate_w")
        if image_mask is not None:
            iv, fv = iv * image_mask[:, None, None], fv * image_mask[:, None, None]
        f = torch.sigmoid(ft + fv + w("forget_gate_bias_prior"))
        s = residual * f + ht * it + hv * iv
        q = s + lin(F.gelu(lin(ln(s, "mlp_ln"), "mlp.0")), "mlp.3")
    if cfg["use_pooler_features"]:
        q = q.mean(dim=1)
    out = F.linear(q, state[p + "late_proj.weight"])
    return F.normalize(out, p=2, dim=-1)
