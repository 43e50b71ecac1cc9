"""`ragvqa bench NAME`: a whole benchmark through a pipeline into a run directory.

NAME is a benchmark plug-in (`infoseek`, `evqa`, or one registered by another package). File
defaults come from a `benchmarks.yaml` beside the pipeline file when it names the benchmark (a world
of one's own, such as `ragvqa demo`'s: paths relative to that file), else from the plug-in's
`benchmarks/<name>/benchmark.yaml` (paths under `$RAGVQA_DATA`); command-line options win: `--file
ROLE=PATH` for any file role the plug-in declares, with `--questions`, `--qtypes`, `--withkb` and
`--bem` as aliases (`ragvqa.benchmarks.files`). `--retrieval-only` stops after retrieval (recall@K,
no reader loaded). `--check` compares the run's metrics with the plug-in's `expected.yaml` and exits
1 outside tolerance. The summary table and the check's OK / FAIL lines are the result, on stdout
(tab-separated rows and plain lines off a terminal); with `--json` the metrics are on stdout and the
summary and verdicts on stderr. An existing run directory is resumed when its configuration is the
same, refused when it differs (each difference named) unless `--overwrite`, and locked while a run
writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from ragvqa.benchmarks.files import pipeline_defaults
from ragvqa.cli.common import (
    BenchmarkCommand,
    print_json,
    say,
    show_line,
    show_table,
    shown,
    user_errors,
)
from ragvqa.errors import UserError
from ragvqa.eval.names import metric_label

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
    defaults: dict[str, Any] | None = None,
) -> Any:
    """The run's files: the options given, else `defaults` (default: those of benchmark.yaml).
    A default that is not on disk is named with the `ragvqa data fetch` command that provides
    it."""
    from ragvqa.benchmarks.files import choose_files, fetch_hint
    from ragvqa.run.runner import BenchSpec

    defaults = benchmark.defaults() if defaults is None else defaults
    chosen = choose_files(benchmark, files, defaults, note=say)
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


def check_expected(
    benchmark: Benchmark, pipeline: str, template: str | None, metrics: dict, log: bool = False
) -> bool:
    """Compare with expected.yaml; prints OK / FAIL per metric on stdout (`log`: on stderr);
    True when all are in tolerance."""
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
        verdict = shown("OK", "green") if good else shown("FAIL", "red")
        line = shown(f" {dotted}: {value} (expected {expected} ± {tolerance})")
        show_line(verdict + line, log=log)
    return ok


def _dotted(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def summary(
    benchmark: Benchmark, metrics: dict, out: Path, log: bool = False, titled: bool = False
) -> None:
    """The run's headline figures, recall, failures and timings as a table on stdout (`log`: on
    stderr, beside `--json` on stdout; `titled`: its title kept off a terminal, for a result of
    several runs); the run directory in a note on stderr."""
    template = metrics.get("template") or "retrieval only"
    table = Table(title=shown(f"{benchmark.name} · {metrics['pipeline']} · {template}"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in benchmark.headline if metrics.get("official") else ():
        table.add_row(metric_label(key), str(_dotted(metrics["official"], key)))
    recall = (metrics.get("retrieval") or {}).get("entity_recall") or {}
    for key in [k for k in recall if k.startswith("recall@")]:  # up to the retrieval depth
        table.add_row(f"entity {key}", f"{recall[key]:.1f}")
    counts = metrics["counts"]
    table.add_row("answered / failed", f"{counts['answered']} / {counts['failed']}")
    for reason, count in counts.get("failed_reasons", {}).items():
        table.add_row(shown(f"  failed: {reason}"), str(count))
    for label, value in timing_rows(metrics["timings"]):
        table.add_row(label, value)
    first = benchmark.headline[0] if benchmark.headline else None
    for name, baseline in metrics.get("baselines", {}).items():
        table.add_row(f"baseline {name}", str(_dotted(baseline, first) if first else None))
    show_table(table, titled=titled, log=log)
    say(f"run directory: {out}")


def timing_rows(timings: dict[str, Any]) -> list[tuple[Any, str]]:
    """The summary's time rows: start-up first (loading components: the reader's engine, the
    encoder, the index), each component under it, then each stage without it, then the total:
    ("time start-up", "45.90 s"), ("  reader", "45.20 s"), ("time encode", "0.82 s (cached)")."""
    rows: list[tuple[Any, str]] = []
    startup = timings.get("startup")
    if isinstance(startup, dict):
        note = " (cached)" if startup.get("cached") else ""  # a re-run: the run's own
        rows.append(("time start-up", f"{startup['seconds']:.2f} s{note}"))
        for name, seconds in (startup.get("components") or {}).items():
            rows.append((shown(f"  {name}"), f"{seconds:.2f} s"))
    for name, stage in timings.items():
        if name != "startup" and isinstance(stage, dict) and "seconds" in stage:
            note = " (cached)" if stage.get("cached") else ""
            rows.append((f"time {name}", f"{stage['seconds']:.2f} s{note}"))
    return rows


BenchCommand = BenchmarkCommand  # its help names the registered benchmarks


def execution_overrides(executor: str | None, replicas: int | None) -> list[str]:
    """`--executor` and `--replicas` as the pipeline overrides they stand for."""
    given = {"executor": executor, "replicas": replicas}
    return [f"execution.{key}={value}" for key, value in given.items() if value is not None]


def bench_command(
    benchmark: str = typer.Argument(..., help="Benchmark: a registered plug-in's name."),
    pipeline: Path | None = typer.Option(
        None, "--pipeline", help="Pipeline YAML (default: the shipped default.yaml)."
    ),
    prompt: str | None = typer.Option(None, "--prompt", help="Answer template id@version."),
    files: list[str] = typer.Option(
        [],
        "--file",
        help="A file of the benchmark, ROLE=PATH (repeatable; any role the plug-in declares).",
    ),
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
        None,
        "--out",
        help="Run directory (default: runs/BENCHMARK-PIPELINE-TEMPLATE; PIPELINE is the "
        "pipeline's name, TEMPLATE the template's id@version with _ for /, or retrieval with "
        "--retrieval-only).",
    ),
    overrides: list[str] = typer.Option([], "--set", help="Pipeline override a.b=c (repeatable)."),
    trust_remote_code: bool = typer.Option(
        False,
        "--trust-remote-code",
        help="Let the reader run code from its model's repository (a pipeline file cannot).",
    ),
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
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a run of another configuration in --out."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run's metrics on stdout."),
    executor: str | None = typer.Option(
        None,
        "--executor",
        help="local (this process) or ray (replicas on the Ray cluster at RAY_ADDRESS, else a "
        "local one): the pipeline's execution.executor.",
    ),
    replicas: int | None = typer.Option(
        None, "--replicas", min=1, help="--executor ray: pipeline replicas (execution.replicas)."
    ),
) -> None:
    """Run a benchmark: resumable, stage-cached, officially scored."""
    with user_errors():
        from ragvqa.benchmarks import get_benchmark  # not loaded for --help
        from ragvqa.benchmarks.files import given_files
        from ragvqa.pipeline import Pipeline
        from ragvqa.run.runner import BenchRunner

        plugin = get_benchmark(benchmark)
        aliases = {"questions": questions, "qtypes": qtypes, "withkb": withkb, "bem": bem}
        spec = bench_spec(
            plugin,
            given_files(plugin, files, aliases),
            images=images,
            limit=limit,
            baselines=baselines,
            retrieval_only=retrieval_only,
            defaults=pipeline_defaults(pipeline, plugin),
        )
        overrides = [*overrides, *execution_overrides(executor, replicas)]
        with Pipeline.load(pipeline, overrides, trust_remote_code=trust_remote_code) as pipe:
            if prompt:
                pipe = pipe.with_prompt(prompt)
            pipe.check()
            if out is None:
                stem = Path(pipe.name).stem if pipe.name.endswith(".yaml") else pipe.name
                stem = pipe.config.get("name") or stem  # the pipeline's name: (demo, real-text)
                what = "retrieval" if spec.retrieval_only else pipe.template.ref.replace("/", "_")
                out = Path("runs") / f"{benchmark}-{stem}-{what}"
            runner = BenchRunner(
                pipe, spec, out, cache=cache, use_cache=not no_cache, overwrite=overwrite,
                notify=lambda line: say(f"note: {line}"),
            )  # fmt: skip
            metrics = runner.run()
        summary(plugin, metrics, out, log=as_json)  # with --json, stdout is the JSON alone
        if as_json:
            print_json(metrics)
        if pipe.config.get("notice"):
            say(f"note: {pipe.config['notice']}")
        name = pipe.config.get("name") or Path(pipe.name).stem
        if check and not check_expected(plugin, name, metrics["template"], metrics, as_json):
            raise typer.Exit(1)
