"""Encyclopedic-VQA answer preprocessing and exact matching (the official rules).

Reproduces `preprocess_answer`, `singleanswer_exact_match` and `multianswer_exact_match` of
the official `encyclopedic_vqa/evaluation_utils.py` (google-research), without TensorFlow.
The matching functions take the preprocessing function as an argument, so that a scorer can pass
`cached_preprocess()` and preprocess each distinct answer once.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

_ASCII_PUNCT = string.punctuation.encode("ascii")  # with "`" and "_"
_OTHER_PUNCT = ("‘", "’", "´")  # deleted too
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
# both tables in one lookup: their keys are disjoint and no value of _WORD_MAP is a key
_WORDS = {**_CONTRACTIONS, **_WORD_MAP}


def preprocess_answer(answer: str) -> str:
    """Normalise an answer the way the official E-VQA scorer does, step by step."""
    answer = answer.lower().replace("\n", " ").replace("\t", " ").strip()
    if answer.startswith(_SPAN_PREFIX):
        answer = answer.replace(_SPAN_PREFIX, "")  # official: every occurrence, not just one
    answer = _ARTICLES.sub(" ", _delete_punctuation(answer))
    return " ".join([_WORDS.get(w, w) for w in answer.split()])  # _WORD_MAP, then _CONTRACTIONS


def _delete_punctuation(text: str) -> str:
    """ASCII punctuation deleted from the UTF-8 bytes (faster than `str.translate`; no byte of
    a multi-byte character is ASCII), then the three others."""
    raw = text.encode("utf-8", "surrogatepass").translate(None, _ASCII_PUNCT)
    text = raw.decode("utf-8", "surrogatepass")
    if not text.isascii():
        for char in _OTHER_PUNCT:
            text = text.replace(char, "")
    return text


Preprocess = Callable[[str], str]


def cached_preprocess() -> Preprocess:
    """`preprocess_answer` remembering its results (use one per scoring run)."""
    cache: dict[str, str] = {}

    def preprocess(answer: str) -> str:
        out = cache.get(answer)
        if out is None:
            out = cache[answer] = preprocess_answer(answer)
        return out

    return preprocess


class EmptyReference(ValueError):
    """A reference answer that is empty (or empty after preprocessing): the official scorer
    raises on it, so ragvqa reports it as bad input."""


def single_answer_match(
    reference: str, candidate: str, preprocess: Preprocess = preprocess_answer
) -> bool:
    """Exact match of the preprocessed strings."""
    ref = preprocess(reference)
    if not ref:
        raise EmptyReference(f"reference answer {reference!r} is empty after preprocessing")
    return ref == preprocess(candidate)


def multi_answer_items(candidate: str, preprocess: Preprocess = preprocess_answer) -> list[str]:
    """Candidate list items: ' and ' / ' & ' become ',' (case-sensitive), split, preprocess."""
    parts = candidate.replace(" and ", ",").replace(" & ", ",").split(",")
    return [item for item in (preprocess(p) for p in parts) if item]


def multi_answer_match(
    reference: str,
    candidate: str,
    threshold: float = 0.5,
    preprocess: Preprocess = preprocess_answer,
) -> bool:
    """Set IoU of reference items ('&&'-separated) and candidate items is at least 0.5."""
    ref_items = {item for item in (preprocess(r) for r in reference.split("&&")) if item}
    if not ref_items:
        raise EmptyReference(f"reference list {reference!r} is empty after preprocessing")
    cand_items = set(multi_answer_items(candidate, preprocess))
    return len(ref_items & cand_items) / len(ref_items | cand_items) >= threshold


def exact_match(
    reference: str,
    candidate: str,
    question_type: str,
    preprocess: Preprocess = preprocess_answer,
) -> bool:
    """The official exact-match rule for one reference alternative."""
    if not reference:
        raise EmptyReference("reference answer is empty")
    if question_type == "multi_answer":
        return multi_answer_match(reference, candidate, preprocess=preprocess)
    return single_answer_match(reference, candidate, preprocess)
