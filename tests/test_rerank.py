"""Rerankers: fusion and ordering on hand-made scores, robust entity-choice parsing, and each
reranker on real (tiny) models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ragvqa.generate.base import Sampling
from ragvqa.prompts import PromptLibrary
from ragvqa.registry import RERANKERS
from ragvqa.rerank.entity_choice import EntityChoiceReranker, candidates, parse_choice
from ragvqa.rerank.fusion import fused_order
from ragvqa.types import Generation, Passage, RetrievalResult, RetrievedPassage, VQAQuery

CHOICE = PromptLibrary().get("rerank/entity_choice@1")


def _result(rows):
    """rows: (passage id, page id, title, score) in first-stage order."""
    return RetrievalResult(
        "q",
        tuple(
            RetrievedPassage(Passage(pid, f"text of {pid}", title=title, page_id=page), score, i)
            for i, (pid, page, title, score) in enumerate(rows)
        ),
    )


FIRST = _result([("a#0", "A", "Alpha", 0.9), ("b#0", "B", "Beta", 0.5), ("c#0", "C", "Gamma", 0.7)])


def test_fusion_by_hand():
    # alpha 0.5: a = .45 + .05 = .50, b = .25 + .45 = .70, c = .35 + .10 = .45
    fused = fused_order(FIRST, [0.1, 0.9, 0.2], alpha=0.5)
    assert [p.passage.passage_id for p in fused.passages] == ["b#0", "a#0", "c#0"]
    assert [p.score for p in fused.passages] == pytest.approx([0.70, 0.50, 0.45])
    assert [p.rank for p in fused.passages] == [0, 1, 2]
    first_only = fused_order(FIRST, [0.1, 0.9, 0.2], alpha=1.0, top_m=2)
    assert [p.passage.passage_id for p in first_only.passages] == ["a#0", "c#0"]
    tie = fused_order(FIRST, [0.0, 0.0, 0.0], alpha=0.0)  # all equal: first-stage order kept
    assert [p.passage.passage_id for p in tie.passages] == ["a#0", "b#0", "c#0"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("2", 1),
        ("2.", 1),
        ("Candidate 3", 2),
        ("the answer is 1", 0),
        ("Beta", 1),
        ("It is gamma.", 2),
        ("none", None),
        ("None of them", None),
        ("7", None),
        ("", None),
        ("qwerty", None),
    ],
)
def test_parse_choice(answer, expected):
    assert parse_choice(answer, ["Alpha", "Beta", "Gamma"]) == expected


class Scripted:
    """A generator with known answers (to check the reordering by hand)."""

    model = "scripted"

    def __init__(self, answers):
        self.answers, self.prompts = list(answers), []

    def generate(self, prompts, sampling):
        self.prompts += prompts
        return [Generation(self.answers.pop(0), self.model) for _ in prompts]


def test_entity_choice_moves_the_chosen_page_first():
    result = _result(
        [
            ("a#0", "A", "Alpha", 0.9),
            ("a#1", "A", "Alpha", 0.8),
            ("b#0", "B", "Beta", 0.6),
            ("b#1", "B", "Beta", 0.5),
        ]
    )
    reranker = EntityChoiceReranker(Scripted(["2", "no idea"]), CHOICE)
    query = VQAQuery("q", "what is it?", "q.jpg")
    chosen, fallback = reranker.rerank_batch([query, query], [result, result])
    assert [p.passage.passage_id for p in chosen.passages] == ["b#0", "b#1", "a#0", "a#1"]
    assert [p.score for p in chosen.passages] == [0.6, 0.5, 0.9, 0.8]  # scores kept
    assert [p.passage.passage_id for p in fallback.passages] == ["a#0", "a#1", "b#0", "b#1"]
    prompt = reranker.generator.prompts[0]
    assert prompt.images() == ["q.jpg"] and "1. Alpha\n2. Beta" in prompt.messages[1].text
    assert candidates(result, 1) == [("A", "Alpha")]


def test_entity_choice_with_a_real_reader(vllm_engine, colour_images):
    """The choice prompt goes through vLLM with the question's image (the world's tiny
    Qwen2.5-VL reads it): its token count includes the image's 4 merged patches and the
    vision start and end markers."""

    class Recording:  # the session's engine, keeping what it generated
        model = vllm_engine.model

        def __init__(self):
            self.outputs = []

        def generate(self, prompts, sampling):
            self.outputs += vllm_engine.generate(prompts, sampling)
            return self.outputs[-len(prompts) :]

    engine = Recording()
    reranker = EntityChoiceReranker(engine, CHOICE, sampling=Sampling(max_tokens=4))
    queries = [VQAQuery(c, "what is it?", image) for c, image in colour_images.items()]
    red, blue = reranker.rerank_batch([*queries, VQAQuery("t", "what is it?")], [FIRST] * 3)[:2]
    # whatever the tiny random model says, the result is a permutation of the input with the
    # first-stage scores, and a choice it makes moves one page to the front
    for out in (red, blue):
        assert sorted(p.passage.passage_id for p in out.passages) == ["a#0", "b#0", "c#0"]
        assert {p.passage.passage_id: p.score for p in out.passages} == {
            "a#0": 0.9,
            "b#0": 0.5,
            "c#0": 0.7,
        }
    with_red, with_blue, text_only = engine.outputs
    assert with_red.prompt_tokens == with_blue.prompt_tokens == text_only.prompt_tokens + 4 + 2


def test_cross_encoder_scores_and_fusion(tmp_path):
    from conftest import build_bert_classifier

    build_bert_classifier(tmp_path, num_labels=1)
    reranker = RERANKERS.get("cross_encoder")(str(tmp_path), alpha=0.25, device="cpu")
    texts = ["Alpha: text of a#0", "Beta: text of b#0", "Gamma: text of c#0"]
    scores = reranker.scores("what is it?", texts)
    with torch.inference_mode():
        for text, score in zip(texts, scores, strict=True):
            inputs = reranker.tokenizer("what is it?", text, return_tensors="pt")
            assert reranker.model(**inputs).logits[0, 0].item() == pytest.approx(score, abs=1e-5)
    out = reranker.rerank(VQAQuery("q", "what is it?"), FIRST)
    expected = [0.25 * f + 0.75 * s for f, s in zip([0.9, 0.5, 0.7], scores, strict=True)]
    order = np.argsort(-np.array(expected), kind="stable")
    assert [p.passage.passage_id for p in out.passages] == [["a#0", "b#0", "c#0"][i] for i in order]
    assert [p.score for p in out.passages] == pytest.approx(sorted(expected, reverse=True))


def test_ret_section_rescoring(tmp_path):
    from dataclasses import replace

    from ret_fixtures import TEXT, VISION, clip_tokenizer, image_processor

    from ragvqa.index.documents import document_text
    from ragvqa.kb.build import BuildParams, build_kb
    from ragvqa.kb.store import KBStore
    from ragvqa.models.checkpoint import save_retriever
    from ragvqa.models.config import HeadConfig, RetrieverConfig
    from ragvqa.models.encode import RetEncoder
    from ragvqa.models.processor import RetProcessor
    from ragvqa.models.retriever import RetRetriever

    kb_json = {
        f"P{i}": {
            "title": f"p{i}",
            "section_titles": [f"p{i}", "a", "b"],
            "section_texts": [f"the {i} rain", f"a train {i}", f"the tree {i}"],
            "image_urls": [],
            "image_section_indices": [],
        }
        for i in range(4)
    }
    (tmp_path / "kb.json").write_text(json.dumps(kb_json))
    build_kb(BuildParams("evqa", str(tmp_path / "kb.json")), tmp_path / "kb", progress=False)
    kb = KBStore(tmp_path / "kb")
    torch.manual_seed(0)
    head = HeadConfig((0, 1), (0, 1), hidden_size=64, num_queries=4, output_vectors=4, proj_size=16)
    save_retriever(
        RetRetriever(RetrieverConfig(dict(TEXT), dict(VISION), query=head, document=None)),
        tmp_path / "enc",
        RetProcessor(clip_tokenizer(tmp_path / "tok"), image_processor()),
    )
    encoder = RetEncoder.from_pretrained(tmp_path / "enc", device="cpu")
    first = _result(
        [
            ("P2#1", "P2", "p2", 3.0),
            ("P0#0", "P0", "p0", 2.0),
            ("P2#0", "P2", "p2", 1.5),
            ("P3#2", "P3", "p3", 1.0),
        ]
    )
    reranker = RERANKERS.get("ret_sections")(encoder, kb, alpha=0.5, top_entities=2)
    query = VQAQuery("q", "the train?")
    out = reranker.rerank(query, first)
    # candidates: every section of the top-2 pages (P2, P0), not P3
    assert sorted(p.passage.passage_id for p in out.passages) == [
        "P0#0",
        "P0#1",
        "P0#2",
        "P2#0",
        "P2#1",
        "P2#2",
    ]
    sections = kb.page_passages("P2") + kb.page_passages("P0")
    q = encoder.encode_queries([query])[0]
    expected = {}
    for p in sections:
        d = encoder.encode_documents(
            [replace(p, text=document_text(p, "{display_title}\n{text}"))]
        )[0]
        maxsim = float((q @ d.T).max(axis=1).sum())
        first_score = {"P2#1": 3.0, "P0#0": 2.0, "P2#0": 1.5}.get(
            p.passage_id, {"P2": 3.0, "P0": 2.0}[p.page_id]
        )
        expected[p.passage_id] = 0.5 * first_score + 0.5 * maxsim
    assert {p.passage.passage_id: p.score for p in out.passages} == pytest.approx(
        expected, abs=1e-4
    )
    assert [p.score for p in out.passages] == sorted(p.score for p in out.passages)[::-1]
