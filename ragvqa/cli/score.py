"""`ragvqa score NAME --predictions P [--file ROLE=PATH ...]`: official scores of a prediction file.

NAME is any registered benchmark plug-in (`infoseek`, `evqa`, `wn-wiki`, or one from another
package); the plug-in says which files it reads (`--file ROLE=PATH`, with `--questions`,
`--qtypes`, `--withkb` and `--bem` / `--bem-model` as aliases), how it scores (the same scorer as
`ragvqa bench`, so the figures are the run's) and what its table shows. A required file not
given comes from the plug-in's benchmark.yaml (under `$RAGVQA_DATA`, or shipped with it); an
optional one (E-VQA's BEM) is read only when given, since it changes the scores.

Contract (other tools rely on it): the metrics JSON goes to --output (or stdout when it is
omitted), per-example 0/1 scores to --per-example, and a human-readable table to stdout when
the JSON went to --output (tab-separated rows off a terminal), else to stderr, so stdout is the
JSON alone; the coverage and scoring notes go to stderr. Bad input exits with status 2 and one
line naming the file and line.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ragvqa.cli.common import BenchmarkCommand, print_json, show_table, stderr, user_errors

if TYPE_CHECKING:
    from ragvqa.benchmarks.base import ScoreTable

HELP = "Score a predictions file by a benchmark's official rules (any registered benchmark)."


def _emit(
    metrics: dict[str, Any],
    coverage: dict[str, Any],
    scores: tuple[list[str], list[int]],
    output: Path | None,
    per_example: Path | None,
) -> None:
    """Metrics and coverage to --output or stdout; (ids, 0/1 scores) to --per-example."""
    from ragvqa.eval.predictions import write_score_columns
    from ragvqa.io import write_json

    document = {**metrics, "coverage": coverage}
    if per_example is not None:
        write_score_columns(per_example, *scores)
    if output is not None:
        write_json(output, document)
    else:
        print_json(document)


def _check_paths(output: Path | None, per_example: Path | None, inputs: dict[str, Path]) -> None:
    """Refuse, before scoring, an output that is one of the inputs (or the other output)."""
    from ragvqa.io import check_outputs

    check_outputs({"--output": output, "--per-example": per_example}, inputs)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a whole benchmark is read and scored: its records
    form no cycles, and collections walking ever more live records cost ~10% of the run."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _table(view: ScoreTable) -> Any:
    from rich.table import Table  # for the table only

    table = Table(title=view.title)
    for i, column in enumerate(view.columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in view.rows:
        table.add_row(*row)
    return table


ScoreCommand = BenchmarkCommand  # its help names the registered benchmarks


def score_command(
    benchmark: str = typer.Argument(..., help="Benchmark: a registered plug-in's name."),
    predictions: Path = typer.Option(..., "--predictions", help="JSONL of {data_id, prediction}."),
    files: list[str] = typer.Option(
        [],
        "--file",
        help="A file of the benchmark, ROLE=PATH (repeatable; any role the plug-in declares).",
    ),
    questions: Path | None = typer.Option(
        None, "--questions", help="Questions file (InfoSeek JSONL, E-VQA test.csv, ...)."
    ),
    qtypes: Path | None = typer.Option(
        None, "--qtypes", help="InfoSeek question-type JSONL (infoseek_*_qtype.jsonl)."
    ),
    withkb: Path | None = typer.Option(
        None, "--withkb", help="InfoSeek withkb JSONL (gold entities)."
    ),
    bem: Path | None = typer.Option(
        None,
        "--bem",
        "--bem-model",
        help="E-VQA: HF-format BEM checkpoint; without it: exact match only.",
    ),
    output: Path | None = typer.Option(
        None, "--output", help="Write the metrics JSON here (default: stdout)."
    ),
    per_example: Path | None = typer.Option(
        None, "--per-example", help="Write {data_id, score} JSONL here."
    ),
) -> None:
    """Score predictions exactly as the benchmark's official scorer does."""
    with user_errors():
        from ragvqa.benchmarks import get_benchmark
        from ragvqa.benchmarks.files import choose_files, flag, given_files

        plugin = get_benchmark(benchmark)
        aliases = {"questions": questions, "qtypes": qtypes, "withkb": withkb, "bem": bem}
        given = given_files(plugin, files, aliases)
        chosen = choose_files(plugin, given, plugin.defaults(), optional_defaults=False)
        inputs = {"--predictions": predictions}
        inputs |= {flag(role).removesuffix("=PATH"): Path(path) for role, path in chosen.items()}
        _check_paths(output, per_example, inputs)
        with _gc_paused():
            result = plugin.score_file(str(predictions), chosen)
        _emit(result.metrics, result.coverage, (result.ids, result.scores), output, per_example)
        # stdout: the JSON's when --output is not given
        show_table(_table(plugin.score_table(result.metrics)), log=output is None)
        for line in result.notes:
            stderr.print(line, highlight=False)
