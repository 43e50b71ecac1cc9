"""Encyclopedic-VQA answer preprocessing and exact matching (the official rules).

Reproduces `preprocess_answer`, `singleanswer_exact_match` and `multianswer_exact_match` of
the official `encyclopedic_vqa/evaluation_utils.py` (google-research), without TensorFlow.
"""

from __future__ import annotations

import re
import string

_PUNCT = str.maketrans("", "", string.punctuation + "‘’´`_")
_ARTICLES = re.compile(r"\b(the answer is|a|an|the)\b")
_SPAN_PREFIX = "<extra_id_0> "
_WORD_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
    "entailment": "yes", "true": "yes", "contradiction": "no", "false": "no",
}  # fmt: skip

# The VQA-v2 contraction table, restricted to the entries that can ever apply. Preprocessing
# lower-cases and deletes punctuation (apostrophes included) before this lookup, so only
# lower-case, apostrophe-free keys can match a word; the table's other keys are unreachable.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "isnt": "isn't", "itd": "it'd",
    "itll": "it'll", "maam": "ma'am", "mightnt": "mightn't", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "shant": "shan't", "shouldve": "should've",
    "shouldnt": "shouldn't", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someonell": "someone'll", "someones": "someone's",
    "somethingd": "something'd", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've",
    "wouldnt": "wouldn't", "yall": "y'all", "youd": "you'd", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip


def preprocess_answer(answer: str) -> str:
    """Normalise an answer the way the official E-VQA scorer does, step by step."""
    answer = answer.lower().replace("\n", " ").replace("\t", " ").strip()
    if answer.startswith(_SPAN_PREFIX):
        answer = answer.replace(_SPAN_PREFIX, "")  # official: every occurrence, not just one
    answer = _ARTICLES.sub(" ", answer.translate(_PUNCT))
    words = (_WORD_MAP.get(w, w) for w in answer.split())
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


class EmptyReference(ValueError):
    """A reference answer that is empty (or empty after preprocessing): the official scorer
    raises on it, so ragvqa reports it as bad input."""


def single_answer_match(reference: str, candidate: str) -> bool:
    """Exact match of the preprocessed strings."""
    ref = preprocess_answer(reference)
    if not ref:
        raise EmptyReference(f"reference answer {reference!r} is empty after preprocessing")
    return ref == preprocess_answer(candidate)


def multi_answer_items(candidate: str) -> list[str]:
    """Candidate list items: ' and ' / ' & ' become ',' (case-sensitive), split, preprocess."""
    parts = candidate.replace(" and ", ",").replace(" & ", ",").split(",")
    return [item for item in (preprocess_answer(p) for p in parts) if item]


def multi_answer_match(reference: str, candidate: str, threshold: float = 0.5) -> bool:
    """Set IoU of reference items ('&&'-separated) and candidate items is at least 0.5."""
    ref_items = {item for item in (preprocess_answer(r) for r in reference.split("&&")) if item}
    if not ref_items:
        raise EmptyReference(f"reference list {reference!r} is empty after preprocessing")
    cand_items = set(multi_answer_items(candidate))
    return len(ref_items & cand_items) / len(ref_items | cand_items) >= threshold


def exact_match(reference: str, candidate: str, question_type: str) -> bool:
    """The official exact-match rule for one reference alternative."""
    if not reference:
        raise EmptyReference("reference answer is empty")
    if question_type == "multi_answer":
        return multi_answer_match(reference, candidate)
    return single_answer_match(reference, candidate)
