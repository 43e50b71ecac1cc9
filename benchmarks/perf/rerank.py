"""Reranking cost per question at K = 20 candidate entities (5 sections each): prints JSON.

Real architectures at real sizes with random weights (nothing is downloaded):
- `cross_encoder`: a BERT-base classifier (the size of bge-reranker-base) over 100
  (question, section) pairs of ~100 words;
- `ret_sections`: the `ret2-vit-b32` preset: one query (image + question) and 100 text-only
  sections (their batches skip the vision tower), 77 CLIP tokens each;
- `entity_choice`: one batched generation per 8 questions with the tests' tiny Llama on vLLM
  (a real-size MLLM does not run on this CPU); the figure is the engine overhead per question.

Run: python benchmarks/perf/rerank.py
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2] / "tests"
WORDS = "the bridge river church was built in century by king and town north old".split()


def _first_stage(k_entities: int = 20, sections: int = 5):
    from ragvqa.types import Passage, RetrievalResult, RetrievedPassage

    text = " ".join(WORDS[i % len(WORDS)] for i in range(100))
    rows = [
        (f"E{e}#{s}", f"E{e}", f"Entity {e}") for e in range(k_entities) for s in range(sections)
    ]
    return RetrievalResult(
        "q",
        tuple(
            RetrievedPassage(Passage(pid, text, title=title, page_id=page), 1.0 - i / 200, i)
            for i, (pid, page, title) in enumerate(rows)
        ),
    )


def cross_encoder(tmp: Path, result) -> float:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from ragvqa.rerank.cross_encoder import CrossEncoderReranker
    from ragvqa.types import VQAQuery

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab=str(tmp / "vocab.txt")).save_pretrained(tmp)
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=len(vocab), num_labels=1)).save_pretrained(
        tmp, safe_serialization=True
    )
    reranker = CrossEncoderReranker(str(tmp), device="cpu")
    query = VQAQuery("q", "when was the church built?")
    reranker.rerank(query, result)
    start = time.perf_counter()
    reranker.rerank(query, result)
    return time.perf_counter() - start


def ret_sections(tmp: Path, result) -> float:
    import torch
    from PIL import Image

    sys.path.insert(0, str(TESTS))
    from ret_fixtures import clip_tokenizer, image_processor

    from ragvqa.kb.store import KBStore  # noqa: F401  (the reranker's KB interface)
    from ragvqa.models.config import preset
    from ragvqa.models.encode import RetEncoder
    from ragvqa.models.processor import RetProcessor
    from ragvqa.models.retriever import RetRetriever
    from ragvqa.rerank.ret_sections import RetSectionReranker
    from ragvqa.types import VQAQuery

    class Sections:  # the sections are the first-stage passages themselves
        def page_passages(self, page_id):
            return [rp.passage for rp in result.passages if rp.passage.page_id == page_id]

    torch.manual_seed(0)
    model = RetRetriever(preset("ret2-vit-b32")).eval()
    ip = image_processor()
    ip.size, ip.crop_size = {"shortest_edge": 224}, {"height": 224, "width": 224}
    encoder = RetEncoder(model, RetProcessor(clip_tokenizer(tmp / "tok"), ip), progress=False)
    image = tmp / "q.jpg"
    Image.new("RGB", (320, 240), "red").save(image)
    reranker = RetSectionReranker(encoder, Sections(), top_entities=20)
    query = VQAQuery("q", "when was the church built?", str(image))
    reranker.rerank(query, result)
    start = time.perf_counter()
    reranker.rerank(query, result)
    return time.perf_counter() - start


def entity_choice(tmp: Path, result) -> float:
    sys.path.insert(0, str(TESTS))
    from llm_fixtures import tiny_llama

    from ragvqa.prompts import PromptLibrary
    from ragvqa.readers.vllm_backend import VLLMReader
    from ragvqa.rerank.entity_choice import EntityChoiceReranker
    from ragvqa.types import VQAQuery

    engine = VLLMReader(
        str(tiny_llama(tmp / "llama")),
        dtype="float32",
        max_model_len=512,
        enforce_eager=True,
        gpu_memory_utilization=0.15,
    )
    reranker = EntityChoiceReranker(
        engine, PromptLibrary().get("rerank/entity_choice@1"), max_candidates=20
    )
    queries = [VQAQuery(f"q{i}", "what is it?") for i in range(8)]
    reranker.rerank_batch(queries, [result] * 8)
    start = time.perf_counter()
    reranker.rerank_batch(queries, [result] * 8)
    return (time.perf_counter() - start) / 8


def main() -> None:
    result = _first_stage()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        figures = {}
        for name, fn in (
            ("cross_encoder", cross_encoder),
            ("ret_sections", ret_sections),
            ("entity_choice", entity_choice),
        ):
            (root / name).mkdir()
            figures[name] = round(fn(root / name, result), 3)
    print(
        json.dumps(
            {
                "machine": {"cpu": platform.processor() or platform.machine()},
                "entities": 20,
                "sections_per_entity": 5,
                "seconds_per_question": figures,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
