"""Entity recall@K and pseudo-recall@K on hand-built rankings."""

from __future__ import annotations

import pytest

from ragvqa.eval.retrieval_metrics import entity_recall, pseudo_recall
from ragvqa.types import BenchmarkExample, Passage, RetrievalResult, RetrievedPassage


def _result(qid, passages):
    return RetrievalResult(
        qid, tuple(RetrievedPassage(p, 1.0 - i / 10, i) for i, p in enumerate(passages))
    )


P = {
    "rose": Passage("p1", "The rose is red and blooms in 1850.", page_id="wiki/Rose"),
    "tulip": Passage("p2", "Tulips come from Turkey.", page_id="wiki/Tulip"),
    "impala": Passage("p3", "Impala gestation lasts 6.5 months.", entity_id="Q132576"),
}
EXAMPLES = [
    BenchmarkExample("a", "evqa", "q", answers=("Red",), entity_ids=("wiki/Rose",)),
    BenchmarkExample("b", "evqa", "q", answers=("Istanbul",), entity_ids=("wiki/X", "wiki/Tulip")),
    BenchmarkExample("c", "infoseek", "q", answer_eval=("6.5 months",), entity_ids=("Q132576",)),
    BenchmarkExample("d", "infoseek", "q"),  # no gold entity, no answers: not judged
]
RESULTS = [
    _result("a", [P["tulip"], P["rose"]]),  # gold at rank 2
    _result("b", [P["tulip"]]),  # 2-hop: either URL counts -> rank 1
    _result("c", [P["rose"], P["tulip"], P["impala"]]),  # rank 3
    _result("d", [P["rose"]]),
]


def test_entity_recall_by_hand():
    r = entity_recall(RESULTS, EXAMPLES, ks=(1, 2, 3))
    assert r["recall@1"] == pytest.approx(100 / 3)  # b
    assert r["recall@2"] == pytest.approx(200 / 3)  # a, b
    assert r["recall@3"] == 100.0
    assert (r["judged"], r["skipped"]) == (3, 1)


def test_pseudo_recall_by_hand():
    r = pseudo_recall(RESULTS, EXAMPLES, ks=(1, 2, 3))
    # a: 'red' in rose text at rank 2; b: 'istanbul' nowhere; c: '6.5 months' at rank 3
    assert (r["recall@1"], r["recall@2"], r["recall@3"]) == (
        0.0,
        pytest.approx(100 / 3),
        pytest.approx(200 / 3),
    )
    assert (r["judged"], r["skipped"]) == (3, 1)
