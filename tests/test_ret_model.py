"""The ReT family on tiny checkpoints in the real formats: official loading is exact, ragvqa's
own format round-trips, bad checkpoints are refused with one line."""

from __future__ import annotations

import json

import pytest
import torch
from ret_fixtures import (
    clip_tokenizer,
    image_processor,
    official_tiny,
    reference_features,
    write_official_checkpoint,
)

from ragvqa.errors import UserError
from ragvqa.models import load_retriever, preset
from ragvqa.models.checkpoint import save_retriever
from ragvqa.models.config import HeadConfig, RetrieverConfig
from ragvqa.models.processor import RetProcessor
from ragvqa.models.retriever import RetRetriever


def _inputs(seed=0, batch=3):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, 90, (batch, 9), generator=g)
    attention_mask = torch.ones(batch, 9, dtype=torch.long)
    attention_mask[1, 5:] = 0  # padding must be masked in the text cross-attention
    attention_mask[2, 3:] = 0
    pixel_values = torch.randn(batch, 3, 32, 32, generator=g)
    text_mask = torch.tensor([1.0, 1.0, 0.0])
    image_mask = torch.tensor([1.0, 0.0, 1.0])
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values=pixel_values,
        text_mask=text_mask,
        image_mask=image_mask,
    )


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    folder = tmp_path_factory.mktemp("official")
    document = official_tiny()
    state = write_official_checkpoint(folder, document)
    return folder, document, state


@pytest.mark.parametrize("side", ["query", "document"])
@pytest.mark.parametrize("masks", [True, False])
def test_official_checkpoint_matches_reference(official, side, masks):
    folder, document, state = official
    model = load_retriever(folder, device="cpu")
    inputs = _inputs()
    if not masks:
        inputs.pop("text_mask"), inputs.pop("image_mask")
    with torch.inference_mode():
        ours = model.features(side, **inputs)
    ref = reference_features(state, document, side, **inputs)
    assert ours.shape == (3, 4, 16)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
    assert torch.allclose(ours.norm(dim=-1), torch.ones(3, 4), atol=1e-5)


def test_query_and_document_heads_differ(official):
    folder, _, _ = official
    model = load_retriever(folder, device="cpu")
    with torch.inference_mode():
        q = model.features("query", **_inputs())
        d = model.features("document", **_inputs())
    assert not torch.allclose(q, d, atol=1e-3)


def test_official_shared_pooled_checkpoint(tmp_path):
    document = official_tiny(shared=True, pooler=True)
    state = write_official_checkpoint(tmp_path, document, seed=1)
    assert not any(k.startswith("passage_model.") for k in state)
    model = load_retriever(tmp_path, device="cpu")
    assert model.config.shared_heads and model.query_head is model.document_head
    inputs = _inputs(seed=3)
    with torch.inference_mode():
        ours = model.features("document", **inputs)
    ref = reference_features(state, document, "document", **inputs)
    assert ours.shape == (3, 1, 16)
    assert torch.allclose(ours[:, 0], ref, atol=1e-5)


def test_unused_tower_blocks_are_not_built(tmp_path):
    # clip_vit_b taps layers 0..11; towers with 14 blocks keep 12, the extra keys are dropped
    document = official_tiny(text_layers=14, vision_layers=13)
    state = write_official_checkpoint(tmp_path, document)
    model = load_retriever(tmp_path, device="cpu")
    assert len(model.text_model.encoder.layers) == 12
    assert len(model.vision_model.encoder.layers) == 12
    inputs = _inputs()
    with torch.inference_mode():
        ours = model.features("query", **inputs)
    assert torch.allclose(ours, reference_features(state, document, "query", **inputs), atol=1e-5)


def test_refuses_missing_and_unexpected_keys(tmp_path):
    from safetensors.torch import load_file, save_file

    document = official_tiny()
    write_official_checkpoint(tmp_path, document)
    state = load_file(tmp_path / "model.safetensors")
    del state["query_model.ret_cell.text_xa.in_proj_weight"]
    state["query_model.ret_cell.extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(UserError) as err:
        load_retriever(tmp_path, device="cpu")
    message = str(err.value)
    assert "1 missing keys (first: query_head.ret_cell.text_xa.in_proj_weight)" in message
    assert "1 unexpected keys (first: query_head.ret_cell.extra.weight)" in message
    assert "\n" not in message


def test_refuses_shape_mismatch_unknown_type_and_missing_folder(tmp_path):
    document = official_tiny()
    write_official_checkpoint(tmp_path / "a", document)
    document["query_config"]["late_proj_output_size"] = 8
    (tmp_path / "a" / "config.json").write_text(json.dumps(document))
    with pytest.raises(UserError, match="shape of query_head.late_proj.weight is"):
        load_retriever(tmp_path / "a", device="cpu")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UserError, match="unknown model_type 'bert'"):
        load_retriever(tmp_path / "b")
    with pytest.raises(UserError, match="checkpoint folder not found"):
        load_retriever(tmp_path / "nope")


def test_unknown_hub_id_offline_is_one_line():
    with pytest.raises(UserError) as err:
        load_retriever("aimagelab/ReT-CLIP-ViT-L-14")
    assert "cannot download checkpoint 'aimagelab/ReT-CLIP-ViT-L-14'" in str(err.value)
    assert "--set encoder.model=/path/to/folder" in str(err.value)  # says which key


def test_pickle_only_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(official_tiny()))
    (tmp_path / "pytorch_model.bin").write_bytes(b"never unpickled")
    with pytest.raises(UserError, match="safetensors only"):
        load_retriever(tmp_path, device="cpu")


def _tiny_config(shared: bool) -> RetrieverConfig:
    from ret_fixtures import TEXT, VISION

    head = HeadConfig(
        (0, 1, 2),
        (1, 2, 3),
        hidden_size=64,
        num_queries=4,
        output_vectors=1 if shared else 4,
        proj_size=16,
    )
    return RetrieverConfig(dict(TEXT), dict(VISION), query=head, document=None if shared else head)


@pytest.mark.parametrize("shared", [True, False])
def test_own_format_round_trip_offline(tmp_path, shared):
    torch.manual_seed(0)
    model = RetRetriever(_tiny_config(shared)).eval()
    processor = RetProcessor(clip_tokenizer(tmp_path / "tok"), image_processor())
    save_retriever(model, tmp_path / "saved", processor)
    from safetensors import safe_open

    with safe_open(tmp_path / "saved" / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("document_head.") for k in keys) is not shared
    assert len(model.text_model.encoder.layers) == 3  # taps 0..2 of a 4-block tower
    loaded = load_retriever(tmp_path / "saved", device="cpu")
    inputs = _inputs()
    with torch.inference_mode():
        for side in ("query", "document"):
            assert torch.equal(model.features(side, **inputs), loaded.features(side, **inputs))
    reloaded = RetProcessor.load(tmp_path / "saved")
    assert reloaded.token_ids(["the thin"]) == processor.token_ids(["the thin"])


def test_presets_and_bad_configs():
    cfg = preset("ret2-vit-b32")
    assert cfg.shared_heads and cfg.query.output_vectors == 1 and len(cfg.query.text_layers) == 3
    v1 = preset("ret-v1-vit-l14")
    assert v1.query.vision_layers == tuple(range(0, 24, 2)) and not v1.shared_heads
    # index bytes per document at fp16: v1 32 x 128 x 2 = 8192; ReT-2 1 x 256 x 2 = 512 (16x)
    assert (v1.query.output_vectors * v1.query.output_dim) / (
        cfg.query.output_vectors * cfg.query.output_dim
    ) >= 16
    with pytest.raises(UserError, match="did you mean 'ret2-vit-b32'"):
        preset("ret2-vit-b31")
    with pytest.raises(UserError, match="output_vectors must be 1 or num_queries"):
        HeadConfig((0,), (0,), num_queries=8, output_vectors=3).validate()
    with pytest.raises(UserError, match="taps text layer 5"):
        from ret_fixtures import TEXT, VISION

        RetRetriever(
            RetrieverConfig(
                dict(TEXT),
                dict(VISION),
                query=HeadConfig((5,), (0,), hidden_size=64, num_queries=4, output_vectors=4),
            )
        )


def test_bf16_scores_stay_within_1e_2_of_fp32():
    """bf16 (ragvqa's GPU default) against fp32 on the same weights (default initialisation,
    12 recurrent steps); scores are MaxSim sums over the query vectors, divided by their count."""
    from ret_fixtures import TEXT, VISION

    from ragvqa.models.loss import late_interaction

    head = HeadConfig(
        tuple(range(12)),
        tuple(range(12)),
        hidden_size=128,
        num_queries=8,
        output_vectors=8,
        proj_size=32,
    )
    towers = dict(TEXT, num_hidden_layers=12), dict(VISION, num_hidden_layers=12)
    torch.manual_seed(0)
    model = RetRetriever(RetrieverConfig(*towers, query=head, document=head)).eval()
    inputs = _inputs()
    scores = []
    for dtype in (torch.float32, torch.bfloat16):
        model.to(dtype)
        x = {**inputs, "pixel_values": inputs["pixel_values"].to(dtype)}
        with torch.inference_mode():
            q = model.features("query", **x).float()
            d = model.features("document", **x).float()
        scores.append(late_interaction(q, d) / q.shape[1])  # in [-1, 1]
    assert model.dtype == torch.bfloat16
    assert 0 < (scores[0] - scores[1]).abs().max() <= 1e-2


def test_batches_without_images_skip_the_vision_tower_exactly(official, monkeypatch):
    folder, _, _ = official
    model = load_retriever(folder, device="cpu")
    inputs = {**_inputs(), "image_mask": torch.zeros(3)}
    with torch.inference_mode():
        full = model.head("document")(
            *model.tower_states(
                inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"]
            ),
            inputs["attention_mask"],
            inputs["text_mask"],
            inputs["image_mask"],
        )
        calls = []
        monkeypatch.setattr(model.vision_model, "forward", lambda *a, **k: calls.append(1))
        skipped = model.features("document", **inputs)
    assert calls == []  # the vision tower never ran
    assert torch.equal(skipped, torch.nn.functional.normalize(full, dim=-1))
