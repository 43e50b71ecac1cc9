"""High-level encoding with a tiny saved retriever: prefixes, masks, batching, bad images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from ret_fixtures import TEXT, VISION, clip_tokenizer, image_processor

from ragvqa.models.checkpoint import save_retriever
from ragvqa.models.config import HeadConfig, RetrieverConfig
from ragvqa.models.encode import BLACK_SIZE, RetEncoder, query_text
from ragvqa.models.processor import RetProcessor
from ragvqa.models.retriever import RetRetriever
from ragvqa.types import Passage, VQAQuery


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ret_saved")
    torch.manual_seed(0)
    head = HeadConfig(
        (0, 1, 2), (1, 2, 3), hidden_size=64, num_queries=4, output_vectors=4, proj_size=16
    )
    config = RetrieverConfig(
        dict(TEXT), dict(VISION), query=head, document=head, query_instruction="retrieve:"
    )
    processor = RetProcessor(clip_tokenizer(folder / "tok"), image_processor())
    save_retriever(RetRetriever(config).eval(), folder / "model", processor)
    return folder / "model"


@pytest.fixture
def images(tmp_path):
    red = tmp_path / "red.png"
    Image.new("RGB", (40, 30), "red").save(red)
    blue = tmp_path / "blue.jpg"
    Image.new("RGB", (20, 50), "blue").save(blue)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return {
        "red": str(red),
        "blue": str(blue),
        "corrupt": str(corrupt),
        "missing": str(tmp_path / "missing.jpg"),
    }


def _manual(encoder, side, text, image, image_present):
    """features() on hand-prepared inputs: the expected output for one item."""
    ids, mask = encoder.processor.pad(encoder.processor.token_ids([text]))
    pixels = encoder.processor.pixels([image])
    with torch.inference_mode():
        out = encoder.model.features(
            side,
            input_ids=ids,
            attention_mask=mask,
            pixel_values=pixels,
            text_mask=torch.tensor([1.0 if text else 0.0]),
            image_mask=torch.tensor([1.0 if image_present else 0.0]),
        )
    return out[0].numpy()


def test_query_text_prefix():
    assert query_text("when?", "retrieve:") == "retrieve: when?"
    assert query_text("", "retrieve:") == "retrieve:"
    assert query_text("when?", "") == "when?"


def test_queries_get_the_instruction_and_the_image(saved, images):
    encoder = RetEncoder.from_pretrained(saved, device="cpu")
    out = encoder.encode_queries([VQAQuery("q0", "the thin rain?", images["red"])])
    assert out.dtype == np.float32 and out.shape == (1, 4, 16)
    with Image.open(images["red"]) as img:
        expected = _manual(encoder, "query", "retrieve: the thin rain?", img.convert("RGB"), True)
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-5)


def test_missing_and_corrupt_images_use_the_black_image_mask(saved, images):
    encoder = RetEncoder.from_pretrained(saved, device="cpu")
    queries = [
        VQAQuery("a", "the rain", images["missing"]),
        VQAQuery("b", "the rain", images["corrupt"]),
        VQAQuery("c", "the rain", None),
    ]
    out = encoder.encode_queries(queries)
    black = Image.new("RGB", (BLACK_SIZE, BLACK_SIZE), "black")
    expected = _manual(encoder, "query", "retrieve: the rain", black, False)
    for row in out:
        np.testing.assert_allclose(row, expected, atol=1e-5)
    stats = encoder.stats
    assert (stats.missing_images, stats.unreadable_images, stats.no_image) == (1, 1, 1)
    assert stats.examples["missing_images"] == [images["missing"]]
    assert stats.examples["unreadable_images"] == [images["corrupt"]]


def test_batching_and_length_sorting_do_not_change_results(saved, images):
    texts = ["a", "the thin rain in the rain", "re", "", "the 12 rains, in?"]
    pics = [images["red"], None, images["blue"], images["red"], None]
    passages = [
        Passage(f"p{i}", t, image_paths=(p,) if p else ())
        for i, (t, p) in enumerate(zip(texts, pics, strict=True))
    ]
    batched = RetEncoder.from_pretrained(saved, device="cpu", batch_size=2).encode_documents(
        passages
    )
    single = RetEncoder.from_pretrained(saved, device="cpu", batch_size=1)
    for i, passage in enumerate(passages):
        np.testing.assert_allclose(batched[i], single.encode_documents([passage])[0], atol=1e-5)
    # documents get no instruction; the empty text is switched off by the text mask
    with Image.open(images["red"]) as img:
        expected = _manual(single, "document", "", img.convert("RGB"), True)
    np.testing.assert_allclose(batched[3], expected, atol=1e-5)


def test_empty_input(saved):
    encoder = RetEncoder.from_pretrained(saved, device="cpu")
    assert encoder.encode_queries([]).shape == (0, 4, 16)


@pytest.mark.parametrize(
    "size", [(1024, 768), (768, 1024), (224, 224), (225, 224), (100, 60), (31, 500), (1, 1)]
)
def test_pixels_equal_transformers_pil_processor_bit_for_bit(size):
    """The direct CLIP preprocessing (resize, crop, rescale, normalise) gives exactly the
    values of transformers' PIL image processor, the one ReT was trained with."""
    from transformers import CLIPImageProcessorPil

    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    for reference in (
        CLIPImageProcessorPil(),  # 224 px, bicubic, CLIP mean / std
        CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 24, "width": 30}),
    ):
        fast = RetProcessor(None, reference)
        assert fast._clip_steps() is not None  # the direct path is taken
        want = reference([image], return_tensors="np")["pixel_values"]
        got = fast.pixels([image]).numpy()
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_pixels_of_other_image_processors_go_through_them():
    from transformers import CLIPImageProcessorPil

    square = CLIPImageProcessorPil(size={"height": 40, "width": 40}, do_center_crop=False)
    processor = RetProcessor(None, square)
    assert processor._clip_steps() is None
    image = Image.new("RGB", (80, 50), color=(10, 200, 30))
    want = square([image], return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(processor.pixels([image]).numpy(), want)
    assert want.shape == (1, 3, 40, 40)
    # images that are not RGB go through transformers too (its own conversion applies)
    clip = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    rgba = Image.new("RGBA", (64, 48), color=(200, 0, 0, 0))  # fully transparent red
    got = RetProcessor(None, clip).pixels([rgba]).numpy()
    np.testing.assert_array_equal(got, clip([rgba], return_tensors="np")["pixel_values"])
    assert got.shape == (1, 3, 32, 32)


def test_long_texts_are_cut_before_tokenising_with_the_same_ids(tmp_path):
    """Cutting a text after its first 77 words gives the ids of tokenising it whole (then
    truncating), whatever the whitespace, punctuation and length."""
    import random

    tokenizer = clip_tokenizer(tmp_path / "tok")
    processor = RetProcessor(tokenizer, None)
    rng = random.Random(0)
    pieces = ["the", "Église", "1345,", "(bishop)", "a-b", "naïve", "東京", "x.y;z", "'s", "é"]
    gaps = [" ", "  ", "\n", "\t", " \n\n "]
    texts = [""]
    for words in (5, 76, 77, 78, 79, 120, 600):
        parts = [rng.choice(pieces) + rng.choice(gaps) for _ in range(words)]
        texts.append(rng.choice(gaps) + "".join(parts))
    whole = tokenizer(texts, truncation=True, max_length=77, padding=False)["input_ids"]
    assert processor.token_ids(texts) == whole
    assert max(len(ids) for ids in whole) == 77  # the long ones do reach the limit
