"""How fast ragvqa scores a full benchmark, in process and as a whole command: prints JSON.

Generates synthetic files the size of InfoSeek val (73,620 questions: 18,656 unseen-question,
54,964 unseen-entity; String / Numerical / Time mix) and of the E-VQA test set (5,750 rows:
1,000 templated, 2,750 automatic, 1,000 multi_answer, 1,000 2_hop) in a temporary folder, pinned
to one CPU core, then times
- reading and scoring in this process (`in_process`), and
- the whole `ragvqa score infoseek` and `ragvqa score evqa` commands as subprocesses, start-up
  included (`whole_process`, best of `--repeats` runs), and, given `--official-infoseek PATH`
  (the official `infoseek_eval.py`; it is not part of ragvqa), the official scorer run on the
  same files in the same way (`evaluate(predictions, questions, qtypes)` in a fresh Python),
  interleaved with ragvqa's runs; its metrics must equal ragvqa's, and the speed-up is printed.
  Each command's CPU seconds (user + system, `*_cpu_s`) are reported next to its wall seconds:
  on a shared machine they show the work done, whatever else runs.

Targets (issue 16): `ragvqa score infoseek` at least 5x faster than the official scorer as a
whole process; `ragvqa score evqa` (exact match) under 0.5 s as a whole process.
Run: python benchmarks/perf/scoring.py [--official-infoseek PATH] [--repeats 5] [--seed N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ragvqa.data.evqa import load_evqa
from ragvqa.data.infoseek import load_answer_key
from ragvqa.eval.evqa_scorer import score_evqa
from ragvqa.eval.infoseek_scorer import score_answer_key
from ragvqa.eval.predictions import load_predictions, read_predictions

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


def _run(argv: list[str]) -> tuple[float, float, str]:
    """Wall and CPU (user + system) seconds of one command, which must succeed, and its
    stdout. CPU time counts only this command's own work, whatever else the machine runs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, done.stdout


def _ragvqa() -> list[str]:
    """The `ragvqa` console script next to this Python, else `python -m ragvqa.cli`."""
    script = Path(sys.executable).with_name("ragvqa")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ragvqa.cli"]


def _official_argv(scorer: Path, p: Path, q: Path, t: Path) -> list[str]:
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from infoseek_eval import evaluate; "
        "print(json.dumps(evaluate(*sys.argv[2:])))"
    )
    return [sys.executable, "-c", code, str(scorer.parent), str(p), str(q), str(t)]


def whole_process(
    folder: Path, files: dict[str, Path], official: Path | None, repeats: int
) -> dict[str, Any]:
    """Best-of-`repeats` wall seconds of each command, runs interleaved so that the machine's
    load falls alike on all of them."""
    out = folder / "metrics.json"
    commands = {
        "infoseek": [
            *_ragvqa(), "score", "infoseek", "--predictions", str(files["p"]),
            "--questions", str(files["q"]), "--qtypes", str(files["t"]), "--output", str(out),
        ],
        "evqa": [
            *_ragvqa(), "score", "evqa", "--predictions", str(files["ep"]),
            "--questions", str(files["c"]), "--output", str(out),
        ],
    }  # fmt: skip
    if official is not None:
        commands["official_infoseek"] = _official_argv(official, files["p"], files["q"], files["t"])
    best = dict.fromkeys(commands, float("inf"))
    best_cpu = dict.fromkeys(commands, float("inf"))
    printed: dict[str, str] = {}
    for _ in range(repeats):
        for name, argv in commands.items():
            seconds, cpu, stdout = _run(argv)
            best[name], best_cpu[name] = min(best[name], seconds), min(best_cpu[name], cpu)
            printed[name] = stdout if name.startswith("official") else out.read_text()
    report: dict[str, Any] = {"repeats": repeats, "evqa_target_s": 0.5}
    for name in commands:
        report[f"{name}_s"] = round(best[name], 3)
        report[f"{name}_cpu_s"] = round(best_cpu[name], 3)
    if official is not None:
        ours = json.loads(printed["infoseek"])
        ours.pop("coverage")
        report["speedup"] = round(best["official_infoseek"] / best["infoseek"], 2)
        report["speedup_cpu"] = round(best_cpu["official_infoseek"] / best_cpu["infoseek"], 2)
        report["speedup_target"] = 5.0
        report["same_metrics_as_official"] = ours == json.loads(printed["official_infoseek"])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="whole-process runs per command")
    parser.add_argument(
        "--official-infoseek", type=Path, help="the official infoseek_eval.py, to time it too"
    )
    args = parser.parse_args()
    if args.official_infoseek is not None and not args.official_infoseek.is_file():
        parser.error(f"--official-infoseek: no such file: {args.official_infoseek}")
    if hasattr(os, "sched_setaffinity"):  # subprocesses inherit it
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "infoseek").mkdir()
        (folder / "evqa").mkdir()
        q, t, p = write_infoseek(folder / "infoseek", rng)
        c, ep = write_evqa(folder / "evqa", rng)
        key, load_s = _timed(lambda: load_answer_key(q, t))
        columns, read_s = _timed(lambda: read_predictions(p))
        result, score_s = _timed(lambda: score_answer_key(*columns, key))
        (eexamples, epreds), eload_s = _timed(
            lambda: (load_evqa(c), load_predictions(ep, int_ids_as_str=True))
        )
        eresult, escore_s = _timed(lambda: score_evqa(epreds, eexamples))
        files = {"q": q, "t": t, "p": p, "c": c, "ep": ep}
        whole = whole_process(folder, files, args.official_infoseek, args.repeats)
    print(
        json.dumps(
            {
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores_used": 1,
                    "python": platform.python_version(),
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                },
                "whole_process": whole,
                "in_process": {
                    "infoseek": {
                        "questions": len(key),
                        "load_s": round(load_s + read_s, 3),
                        "score_s": round(score_s, 3),
                        "total_s": round(load_s + read_s + score_s, 3),
                        "final_score": result.metrics["final_score"],
                    },
                    "evqa": {
                        "rows": len(eexamples),
                        "load_s": round(eload_s, 3),
                        "score_s": round(escore_s, 3),
                        "total_s": round(eload_s + escore_s, 3),
                        "all": eresult.metrics["all"],
                        "scoring": "exact match only",
                    },
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
