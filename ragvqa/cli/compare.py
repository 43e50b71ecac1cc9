"""`ragvqa compare RUN_A RUN_B`: is run B better than run A, by how much, and is it noise?

Contract: the comparison on stdout (which runs, the metrics with B - A and its paired bootstrap
95% interval, how many predictions changed, the first flipped questions): on a terminal rich
tables, in a pipe or a file lines and tab-separated rows (each table's title on a line of its
own first); with `--json`, the whole comparison as JSON on stdout and the same human view on
stderr. Exit 0 whenever the comparison was made (also when B is worse); bad input exits 2 with
one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ragvqa.cli.common import print_json, show_line, show_table, shown, user_errors

if TYPE_CHECKING:  # numpy stays out of `ragvqa --help`
    from ragvqa.eval.compare import Comparison, Flip


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _header(result: Comparison, log: bool) -> None:
    """Which runs are compared: each one's folder, pipeline and answer template."""
    for side, info in (("A", result.info_a), ("B", result.info_b)):
        if info is not None:
            pipeline, template = info.pipeline or "-", info.template or "-"
            show_line(f"{side}: {info.path}  pipeline {pipeline}  template {template}", log=log)


def _metrics_table(result: Comparison) -> Table:
    from ragvqa.eval.names import metric_label

    table = Table(title=shown(f"{result.dataset}: B - A"))
    table.add_column("metric")
    for column in ("A", "B", "B - A", "95% interval", "verdict"):
        table.add_column(column, justify="right")
    for m in result.metrics:
        interval = f"[{_num(m.low, True)}, {_num(m.high, True)}]" if m.low is not None else "-"
        verdict = "excludes 0" if m.excludes_zero else "-"
        label = metric_label(m.name)
        cells = (label, _num(m.a), _num(m.b), _num(m.delta, True), interval, verdict)
        table.add_row(*(shown(c) for c in cells))
    return table


def _flips_table(title: str, flips: tuple[Flip, ...], show: int) -> Table:
    table = Table(
        title=f"{title}: {len(flips)}" + (f" (first {show})" if len(flips) > show else "")
    )
    for column in ("data_id", "question", "A", "B", "gold"):
        table.add_column(column)
    for f in flips[:show]:
        cells = (f.data_id, f.question, f.prediction_a, f.prediction_b, " | ".join(f.gold_answers))
        table.add_row(*(shown(c) for c in cells))
    return table


def compare_command(
    run_a: Path = typer.Argument(..., help="Run directory A (the baseline)."),
    run_b: Path = typer.Argument(..., help="Run directory B (compared with A)."),
    json_out: bool = typer.Option(
        False, "--json", help="Print the whole comparison as JSON on stdout."
    ),
    resamples: int = typer.Option(1000, "--resamples", help="Paired bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
    show: int = typer.Option(10, "--show", help="Flipped questions listed per direction."),
) -> None:
    """Compare two runs on their common questions: official metrics, entity recall, B - A with
    a paired bootstrap 95% interval, and the questions one run gets right and the other not."""
    with user_errors():
        from ragvqa.benchmarks import benchmark_names, get_benchmark
        from ragvqa.eval.compare import compare_runs

        result = compare_runs(
            run_a,
            run_b,
            resamples=resamples,
            seed=seed,
            get_benchmark=get_benchmark,
            benchmark_names=benchmark_names,
        )
    log = json_out  # with --json, stdout is the JSON alone: the human view goes to stderr
    if json_out:
        print_json(result.to_json())
    _header(result, log)
    show_table(_metrics_table(result), titled=True, log=log)
    show_line(
        f"paired on {result.common} questions; only in A: {result.only_a}; only in B: "
        f"{result.only_b}; not scored in A or B: {result.unscored}; {result.resamples} "
        f"resamples, seed {result.seed}",
        log=log,
    )
    flips = len(result.fixed) + len(result.broken)
    show_line(
        f"predictions changed: {result.changed} of {result.common} questions "
        f"({len(result.fixed)} now right, {len(result.broken)} now wrong, "
        f"{result.changed - flips} scored the same)",
        log=log,
    )
    titled = (("wrong in A, right in B", result.fixed), ("right in A, wrong in B", result.broken))
    for title, rows in titled:
        if show > 0 and rows:  # an empty table is left out (the line above counts it)
            show_table(_flips_table(title, rows, show), titled=True, log=log)
