"""`ragvqa bench NAME`: a whole benchmark through a pipeline into a run directory.

NAME is a benchmark plug-in (`infoseek`, `evqa`, or one registered by another package). File
defaults come from the plug-in's `benchmarks/<name>/benchmark.yaml` (paths under
`$RAGVQA_DATA`); command-line options win. `--retrieval-only` stops after retrieval (recall@K,
no reader loaded). `--check` compares the run's metrics with the plug-in's `expected.yaml` and
exits 1 outside tolerance.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragvqa.cli.common import stderr, user_errors
from ragvqa.errors import UserError

if TYPE_CHECKING:
    from ragvqa.benchmarks import Benchmark


def bench_spec(
    benchmark: Benchmark,
    files: dict[str, Path | None],
    *,
    images: Path | None = None,
    limit: int | None = None,
    baselines: bool = False,
    retrieval_only: bool = False,
) -> Any:
    """The run's files: the options given, else the defaults of benchmark.yaml. A default that
    is not on disk is named with the `ragvqa data fetch` command that provides it."""
    from ragvqa.run.runner import BenchSpec

    for role, value in files.items():
        if value is not None and role not in benchmark.roles:
            raise UserError(f"benchmark {benchmark.name!r} reads no --{role} file")
    defaults = benchmark.defaults()
    chosen: dict[str, str] = {}
    for role, kind in benchmark.roles.items():
        given, default = files.get(role), defaults.get(role)
        if given is not None:
            chosen[role] = str(given)
        elif default and Path(default).exists():
            chosen[role] = str(default)
        elif kind.required and default:
            raise UserError(f"file not found; {fetch_hint(benchmark, role)}", path=default)
        elif kind.required:
            raise UserError(
                f"no {role} file: pass --{role}, or set RAGVQA_DATA for the paths in "
                f"{benchmark.folder() / 'benchmark.yaml'}"
            )
        elif default and kind.note:
            stderr.print(
                f"note: {default} not found, {kind.note} ({fetch_hint(benchmark, role)})",
                highlight=False,
            )
    # default image folders that are not there are left out (a user may have only Landmarks)
    default_roots = defaults.get("images") or {}
    roots = {k: v for k, v in default_roots.items() if Path(v).exists()}
    if images is not None:
        if not benchmark.image_root:
            raise UserError(f"benchmark {benchmark.name!r} has no images (--images)")
        roots[benchmark.image_root] = str(images)
    if not roots and benchmark.image_root:  # a text benchmark needs none
        if default_roots:
            role, folder = next(iter(default_roots.items()))
            raise UserError(
                f"no image folder: pass --images, or get {folder} "
                f"({fetch_hint(benchmark, f'images.{role}')})"
            )
        raise UserError(
            "no image folder: pass --images, or set RAGVQA_DATA for the paths in "
            f"{benchmark.folder() / 'benchmark.yaml'}"
        )
    return BenchSpec(
        benchmark=benchmark.name,
        files=chosen,
        images=roots,
        limit=limit,
        baselines=baselines,
        retrieval_only=retrieval_only or not benchmark.scores_answers,
    )


def fetch_hint(benchmark: Benchmark, role: str) -> str:
    """How to get a benchmark file: its catalogue name from benchmark.yaml's `data:` mapping."""
    name = benchmark.catalogue_names().get(role)
    if not name:
        return "see docs/data.md"
    return f"`ragvqa data fetch {name} --to $RAGVQA_DATA` provides it"


def check_expected(
    benchmark: Benchmark, pipeline: str, template: str | None, metrics: dict
) -> bool:
    """Compare with expected.yaml; prints OK / FAIL per metric; True when all are in tolerance."""
    path, entries = benchmark.expected_runs()
    entry = next(
        (e for e in entries if e.get("pipeline") == pipeline and e.get("template") == template),
        None,
    )
    if entry is None:
        raise UserError(
            f"no expected figures for pipeline {pipeline!r} with {template}", path=str(path)
        )
    ok = True
    tolerance = float(entry.get("tolerance", 0.0))
    for dotted, expected in entry["metrics"].items():
        value = _dotted(metrics, dotted)
        good = value is not None and abs(float(value) - float(expected)) <= tolerance
        ok &= good
        verdict = "[green]OK[/]" if good else "[red]FAIL[/]"
        stderr.print(f"{verdict} {escape(dotted)}: {value} (expected {expected} ± {tolerance})")
    return ok


def _dotted(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def summary(benchmark: Benchmark, metrics: dict, out: Path) -> None:
    """The run's headline figures, recall, failures and timings as a table on stderr."""
    template = metrics.get("template") or "retrieval only"
    table = Table(title=escape(f"{benchmark.name} · {metrics['pipeline']} · {template}"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in benchmark.headline if metrics.get("official") else ():
        table.add_row(key.removesuffix(".score"), str(_dotted(metrics["official"], key)))
    recall = (metrics.get("retrieval") or {}).get("entity_recall")
    for k in (1, 5, 10) if recall else ():
        table.add_row(f"entity recall@{k}", f"{recall[f'recall@{k}']:.1f}")
    counts = metrics["counts"]
    table.add_row("answered / failed", f"{counts['answered']} / {counts['failed']}")
    for reason, count in counts.get("failed_reasons", {}).items():
        table.add_row(f"  failed: {escape(reason)}", str(count))
    for name, stage in metrics["timings"].items():
        note = " (cached)" if stage.get("cached") else ""
        table.add_row(f"time {name}", f"{stage['seconds']:.2f} s{note}")
    first = benchmark.headline[0] if benchmark.headline else None
    for name, baseline in metrics.get("baselines", {}).items():
        table.add_row(f"baseline {name}", str(_dotted(baseline, first) if first else None))
    stderr.print(table)
    stderr.print(f"run directory: {out}", highlight=False, markup=False)


def bench_command(
    benchmark: str = typer.Argument(..., help="Benchmark: infoseek, evqa, or a plug-in's name."),
    pipeline: Path | None = typer.Option(
        None, "--pipeline", help="Pipeline YAML (default: the shipped default.yaml)."
    ),
    prompt: str | None = typer.Option(None, "--prompt", help="Answer template id@version."),
    questions: Path | None = typer.Option(
        None, "--questions", help="Questions file (InfoSeek JSONL, E-VQA CSV, ...)."
    ),
    qtypes: Path | None = typer.Option(None, "--qtypes", help="InfoSeek question-type JSONL."),
    withkb: Path | None = typer.Option(
        None, "--withkb", help="InfoSeek withkb JSONL (gold entities)."
    ),
    images: Path | None = typer.Option(
        None, "--images", help="Image root (OVEN for InfoSeek, Landmarks for E-VQA)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="First N questions only."),
    out: Path | None = typer.Option(
        None, "--out", help="Run directory (default runs/<benchmark>-<pipeline>-<prompt>)."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Pipeline override a.b=c (repeatable)."),
    baselines: bool = typer.Option(
        False, "--baselines", help="Also no-retrieval and oracle-entity baselines."
    ),
    retrieval_only: bool = typer.Option(
        False, "--retrieval-only", help="Retrieval stages only: recall@K, no reader loaded."
    ),
    bem: Path | None = typer.Option(
        None, "--bem", help="E-VQA: BEM checkpoint for official EM + BEM."
    ),
    cache: Path | None = typer.Option(
        None, "--cache", help="Stage cache root (default $RAGVQA_CACHE)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute every stage."),
    check: bool = typer.Option(
        False, "--check", help="Exit 1 when metrics are outside expected.yaml's tolerance."
    ),
) -> None:
    """Run a benchmark: resumable, stage-cached, officially scored."""
    with user_errors():
        from ragvqa.benchmarks import get_benchmark  # not loaded for --help
        from ragvqa.pipeline import Pipeline
        from ragvqa.run.runner import BenchRunner

        plugin = get_benchmark(benchmark)
        files = {"questions": questions, "qtypes": qtypes, "withkb": withkb, "bem": bem}
        spec = bench_spec(
            plugin,
            files,
            images=images,
            limit=limit,
            baselines=baselines,
            retrieval_only=retrieval_only,
        )
        with Pipeline.load(pipeline, overrides) as pipe:
            if prompt:
                pipe = pipe.with_prompt(prompt)
            pipe.check()
            if out is None:
                stem = Path(pipe.name).stem if pipe.name.endswith(".yaml") else pipe.name
                what = "retrieval" if spec.retrieval_only else pipe.template.ref.replace("/", "_")
                out = Path("runs") / f"{benchmark}-{stem}-{what}"
            metrics = BenchRunner(pipe, spec, out, cache=cache, use_cache=not no_cache).run()
        summary(plugin, metrics, out)
        if pipe.config.get("notice"):
            stderr.print(f"note: {pipe.config['notice']}", highlight=False, markup=False)
        name = pipe.config.get("name") or Path(pipe.name).stem
        if check and not check_expected(plugin, name, metrics["template"], metrics):
            raise typer.Exit(1)
