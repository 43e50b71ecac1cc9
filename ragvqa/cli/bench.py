"""`ragvqa bench infoseek|evqa`: a whole benchmark through a pipeline into a run directory.

File defaults come from `benchmarks/<name>/benchmark.yaml` (paths under `$RAGVQA_DATA`);
command-line options win. `--check` compares the run's metrics with
`benchmarks/<name>/expected.yaml` and exits 1 outside tolerance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ragvqa.cli.common import stderr, user_errors
from ragvqa.errors import UserError

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def benchmark_defaults(name: str, root: str | None = None) -> dict[str, Any]:
    """benchmarks/<name>/benchmark.yaml with ${RAGVQA_DATA} expanded (unset: left out).

    `root` replaces ${RAGVQA_DATA} when given (default: the environment variable)."""
    from ragvqa.config import read_yaml

    path = BENCHMARKS / name / "benchmark.yaml"
    if not path.is_file():
        return {}
    data = read_yaml(path)
    root = root if root is not None else os.environ.get("RAGVQA_DATA")

    def expand(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in ((k, expand(v)) for k, v in value.items()) if v is not None}
        if isinstance(value, str) and "${RAGVQA_DATA}" in value:
            return value.replace("${RAGVQA_DATA}", root) if root else None
        return value

    return expand(data)


def bench_spec(
    benchmark: str,
    *,
    questions: Path | None,
    qtypes: Path | None,
    withkb: Path | None,
    images: Path | None,
    limit: int | None,
    bem: Path | None,
    baselines: bool,
) -> Any:
    from ragvqa.eval.bench import BenchSpec

    if benchmark not in ("infoseek", "evqa"):
        raise UserError(f"unknown benchmark {benchmark!r} (infoseek or evqa)")
    defaults = benchmark_defaults(benchmark)
    chosen = questions or defaults.get("questions")
    if not chosen:
        raise UserError(
            f"no questions file: pass --questions, or set RAGVQA_DATA for the paths in "
            f"{BENCHMARKS / benchmark / 'benchmark.yaml'}"
        )
    given = {"questions": questions, "qtypes": qtypes, "withkb": withkb}
    for role, value in given.items():  # a default file that is not there: how to get it
        default = defaults.get(role)
        if value is None and default and not Path(default).exists():
            if role == "withkb":  # optional: only entity recall needs it
                stderr.print(
                    f"note: {default} not found, entity recall is not judged "
                    f"({fetch_hint(defaults, role)})",
                    highlight=False,
                )
                defaults.pop(role)
                continue
            raise UserError(f"file not found; {fetch_hint(defaults, role)}", path=default)
    # default image folders that are not there are left out (a user may have only Landmarks)
    default_roots = defaults.get("images") or {}
    roots = {k: v for k, v in default_roots.items() if Path(v).exists()}
    if images is not None:
        roots["oven" if benchmark == "infoseek" else "landmarks"] = str(images)
    if not roots:
        if default_roots:
            role, folder = next(iter(default_roots.items()))
            raise UserError(
                f"no image folder: pass --images, or get {folder} "
                f"({fetch_hint(defaults, f'images.{role}')})"
            )
        raise UserError(
            "no image folder: pass --images, or set RAGVQA_DATA for the paths in "
            f"{BENCHMARKS / benchmark / 'benchmark.yaml'}"
        )
    return BenchSpec(
        benchmark=benchmark,
        questions=str(chosen),
        qtypes=str(qtypes or defaults.get("qtypes") or "") or None,
        withkb=str(withkb or defaults.get("withkb") or "") or None,
        images=roots,
        limit=limit,
        bem=str(bem) if bem else _existing(defaults.get("bem")),
        baselines=baselines,
    )


def fetch_hint(defaults: dict[str, Any], role: str) -> str:
    """How to get a benchmark file: its catalogue name from benchmark.yaml's `data:` mapping."""
    name = (defaults.get("data") or {}).get(role)
    if not name:
        return 'see README "Data"'
    return f"`ragvqa data fetch {name} --to $RAGVQA_DATA` provides it"


def _existing(path: str | None) -> str | None:
    """A default file that is optional (BEM): used when it is there."""
    return path if path and Path(path).exists() else None


def check_expected(benchmark: str, pipeline: str, template: str, metrics: dict) -> bool:
    """Compare with expected.yaml; prints OK / FAIL per metric; True when all are in tolerance."""
    from ragvqa.config import read_yaml

    path = BENCHMARKS / benchmark / "expected.yaml"
    entries = (read_yaml(path) if path.is_file() else {}).get("runs") or []
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
        value: Any = metrics
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        good = value is not None and abs(float(value) - float(expected)) <= tolerance
        ok &= good
        verdict = "[green]OK[/]" if good else "[red]FAIL[/]"
        stderr.print(f"{verdict} {dotted}: {value} (expected {expected} ± {tolerance})")
    return ok


def _summary(metrics: dict, out: Path) -> None:
    table = Table(title=f"{metrics['benchmark']} · {metrics['pipeline']} · {metrics['template']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    official = metrics["official"]
    keys = ("final_score",) if metrics["benchmark"] == "infoseek" else ("single_hop", "all")
    for key in keys:
        table.add_row(key, str(official.get(key)))
    for key in ("unseen_question_score", "unseen_entity_score"):
        if key in official:
            table.add_row(key, str(official[key]["score"]))
    recall = metrics["retrieval"]["entity_recall"]
    for k in (1, 5, 10):
        table.add_row(f"entity recall@{k}", f"{recall[f'recall@{k}']:.1f}")
    counts = metrics["counts"]
    table.add_row("answered / failed", f"{counts['answered']} / {counts['failed']}")
    for reason, count in counts.get("failed_reasons", {}).items():
        table.add_row(f"  failed: {reason}", str(count))
    for name, stage in metrics["timings"].items():
        note = " (cached)" if stage.get("cached") else ""
        table.add_row(f"time {name}", f"{stage['seconds']:.2f} s{note}")
    for name, baseline in metrics.get("baselines", {}).items():
        table.add_row(f"baseline {name}", str(baseline.get(keys[0])))
    stderr.print(table)
    stderr.print(f"run directory: {out}", highlight=False)


def bench_command(
    benchmark: str = typer.Argument(..., help="infoseek or evqa"),
    pipeline: Path | None = typer.Option(
        None, "--pipeline", help="Pipeline YAML (default: pipelines/default.yaml)."
    ),
    prompt: str | None = typer.Option(None, "--prompt", help="Answer template id@version."),
    questions: Path | None = typer.Option(
        None, "--questions", help="Questions file (InfoSeek JSONL or E-VQA CSV)."
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
        from ragvqa.eval.bench import BenchRunner
        from ragvqa.pipeline import Pipeline

        spec = bench_spec(
            benchmark,
            questions=questions,
            qtypes=qtypes,
            withkb=withkb,
            images=images,
            limit=limit,
            bem=bem,
            baselines=baselines,
        )
        pipe = Pipeline.load(pipeline, overrides)
        if prompt:
            pipe = pipe.with_prompt(prompt)
        pipe.check()
        template = pipe.template.ref
        if out is None:
            stem = Path(pipe.name).stem if pipe.name.endswith(".yaml") else pipe.name
            out = Path("runs") / f"{benchmark}-{stem}-{template.replace('/', '_')}"
        try:
            metrics = BenchRunner(pipe, spec, out, cache=cache, use_cache=not no_cache).run()
        finally:
            pipe.close()
        _summary(metrics, out)
        if pipe.config.get("notice"):
            stderr.print(f"[yellow]note:[/] {pipe.config['notice']}", highlight=False)
        name = pipe.config.get("name") or Path(pipe.name).stem
        if check and not check_expected(benchmark, name, template, metrics):
            raise typer.Exit(1)
