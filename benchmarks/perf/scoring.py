"""How fast ragvqa scores a full benchmark: prints one JSON object.

Generates synthetic files the size of InfoSeek val (73,620 questions: 18,656 unseen-question,
54,964 unseen-entity; String / Numerical / Time mix) and of the E-VQA test set (5,750 rows:
1,000 templated, 2,750 automatic, 1,000 multi_answer, 1,000 2_hop) in a temporary folder, then
times reading the files and scoring them, pinned to one CPU core.

Targets (issue 2): InfoSeek under 3 s, E-VQA (exact match) under 1 s, on one core.
Run: python benchmarks/perf/scoring.py [--seed N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

from ragvqa.data.evqa import load_evqa
from ragvqa.data.infoseek import load_infoseek
from ragvqa.eval.evqa_scorer import score_evqa
from ragvqa.eval.infoseek_scorer import score_infoseek
from ragvqa.eval.predictions import load_predictions

WORDS = "red green blue river mount saint church bridge tower lake north old new city".split()


def _phrase(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))).title()


def write_infoseek(folder: Path, rng: random.Random) -> tuple[Path, Path, Path]:
    q, t, p = folder / "q.jsonl", folder / "t.jsonl", folder / "p.jsonl"
    with q.open("w") as fq, t.open("w") as ft, p.open("w") as fp:
        for i in range(73_620):
            data_id = f"infoseek_val_{i:08d}"
            split = "val_unseen_question" if i < 18_656 else "val_unseen_entity"
            kind = rng.choices(["String", "Numerical", "Time"], [0.7, 0.25, 0.05])[0]
            if kind == "Numerical":
                lo = round(rng.uniform(0, 1000), 1)
                answer_eval = [{"wikidata": lo + 1, "range": [lo, lo + 2]}]
                guess = rng.choice([f"{lo + 1}", f"{lo - 5}-{lo + 1}", "about 12,000 m", "none"])
            elif kind == "Time":
                year = rng.randint(1000, 2020)
                answer_eval = [str(year), str(year - 1), str(year + 1)]
                guess = rng.choice([str(year), f"in {year + 3}", "March 3, 1901"])
            else:
                answer_eval = [_phrase(rng) for _ in range(rng.randint(1, 5))]
                guess = rng.choice([f"The {answer_eval[0]}.", _phrase(rng)])
            fq.write(
                json.dumps(
                    {
                        "data_id": data_id,
                        "image_id": f"oven_{i:08d}",
                        "question": "What is this?",
                        "answer": ["x"],
                        "answer_eval": answer_eval,
                        "data_split": split,
                    }
                )
                + "\n"
            )
            ft.write(json.dumps({"data_id": data_id, "question_type": kind}) + "\n")
            fp.write(json.dumps({"data_id": data_id, "prediction": guess}) + "\n")
    return q, t, p


def write_evqa(folder: Path, rng: random.Random) -> tuple[Path, Path]:
    c, p = folder / "test.csv", folder / "p.jsonl"
    counts = {"templated": 1000, "automatic": 2750, "multi_answer": 1000, "2_hop": 1000}
    kinds = [k for k, n in counts.items() for _ in range(n)]
    with c.open("w", newline="") as fc, p.open("w") as fp:
        writer = csv.writer(fc)
        writer.writerow(
            [
                "question",
                "answer",
                "dataset_image_ids",
                "dataset_name",
                "question_type",
                "wikipedia_url",
                "evidence",
            ]
        )
        for i, kind in enumerate(kinds):
            if kind == "multi_answer":
                items = [_phrase(rng) for _ in range(3)]
                answer, guess = "&&".join(items), rng.choice([", ".join(items[:2]), items[0]])
            else:
                answer = "|".join(_phrase(rng) for _ in range(rng.randint(1, 3)))
                guess = rng.choice([f"The answer is {answer.split('|')[0]}.", _phrase(rng)])
            writer.writerow(
                [
                    "What is it?",
                    answer,
                    f"{i:016x}",
                    "landmarks",
                    kind,
                    f"https://en.wikipedia.org/wiki/{i}",
                    "evidence " * 40,
                ]
            )
            fp.write(json.dumps({"data_id": str(i), "prediction": guess}) + "\n")
    return c, p


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        q, t, p = write_infoseek(folder, rng)
        (examples, preds), load_s = _timed(lambda: (load_infoseek(q, t), load_predictions(p)))
        result, score_s = _timed(lambda: score_infoseek(preds, examples))
        c, ep = write_evqa(folder, rng)
        (eexamples, epreds), eload_s = _timed(
            lambda: (load_evqa(c), load_predictions(ep, int_ids_as_str=True))
        )
        eresult, escore_s = _timed(lambda: score_evqa(epreds, eexamples))
    print(
        json.dumps(
            {
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores_used": 1,
                    "python": platform.python_version(),
                },
                "infoseek": {
                    "questions": len(examples),
                    "load_s": round(load_s, 3),
                    "score_s": round(score_s, 3),
                    "total_s": round(load_s + score_s, 3),
                    "target_s": 3.0,
                    "final_score": result.metrics["final_score"],
                },
                "evqa": {
                    "rows": len(eexamples),
                    "load_s": round(eload_s, 3),
                    "score_s": round(escore_s, 3),
                    "total_s": round(eload_s + escore_s, 3),
                    "target_s": 1.0,
                    "all": eresult.metrics["all"],
                    "scoring": "exact match only",
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
