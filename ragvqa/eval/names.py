"""Human names for metric keys, the same in `bench`'s table, `compare` and the HTML report.

Scorers name their metrics with keys nested in dicts ("unseen_question_score.score_time",
"by_question_type.2_hop"); people read "Unseen question score: time" and "By question type:
2 hop". The rule is generic (no benchmark is named here): underscores become spaces, a ".score"
leaf is its parent's score, a "score_" prefix under a score is dropped, a few abbreviations are
spelt out, and nesting is written "parent: child".
"""

from __future__ import annotations

WORDS = {"num": "numerical", "bem": "BEM", "em": "EM", "vqa": "VQA", "qid": "QID"}


def _words(key: str) -> str:
    return " ".join(WORDS.get(w, w) for w in key.split("_") if w)


def metric_label(dotted: str) -> str:
    """The label of a metric key: "final_score" -> "Final score";
    "unseen_entity_score.score" -> "Unseen entity score"; "unseen_entity_score.score_num" ->
    "Unseen entity score: numerical"; "counts.all" -> "Counts: all"; "entity_recall@5" ->
    "Entity recall@5"."""
    parts = dotted.split(".")
    if len(parts) > 1 and parts[-1] == "score":
        parts.pop()
    if len(parts) > 1 and parts[-1].startswith("score_"):
        parts[-1] = parts[-1].removeprefix("score_")
    label = ": ".join(_words(p) for p in parts)
    return label[:1].upper() + label[1:]
