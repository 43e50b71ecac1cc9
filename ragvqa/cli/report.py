"""`ragvqa report RUN`: a self-contained HTML page of a benchmark run (see ragvqa.eval.report).

The page is written to --out (default RUN/report.html) and its path printed on stderr (with
`--json`, `{"report": path, "questions": n}` on stdout). Bad input exits with status 2 and one
line, and so does an --out that is an input of the run, before anything is written: one of the
run's own files, a file or folder its `config.yaml` names (benchmark files, the pipeline file,
models, KB, index: `ragvqa.run.folder.recorded_inputs`), one of its images, or a path inside
one of those folders (`ragvqa.run.folder.check_not_inside`). The page's folder is locked while it
is written (`ragvqa.run.lock`): a second ragvqa process writing it is named, exit status 2.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from ragvqa.cli.common import print_json, say, user_errors

DEFAULT_LIMIT = 2000  # some tens of MB of page with embedded photos


def report_command(
    run: Path = typer.Argument(..., help="A finished run directory (predictions.jsonl, metrics)."),
    out: Path | None = typer.Option(
        None, "--out", help="Write the HTML here (default: RUN/report.html)."
    ),
    limit: int = typer.Option(
        DEFAULT_LIMIT, "--limit", min=1, help="At most N questions (every card embeds its image)."
    ),
    all_questions: bool = typer.Option(False, "--all", help="Every question, however many."),
    only: str | None = typer.Option(
        None, "--only", help="Only questions that are correct, wrong, failed or unscored."
    ),
    as_json: bool = typer.Option(
        False, "--json", help='Print {"report": path, "questions": n} on stdout.'
    ),
) -> None:
    """One static HTML page: metrics, recall@K plot, and a card per question with filters."""
    with user_errors():
        from ragvqa.eval.report import REPORT, select_records, write_report
        from ragvqa.io import check_outputs
        from ragvqa.run import records
        from ragvqa.run.folder import check_not_inside, input_label, recorded_inputs
        from ragvqa.run.lock import FolderLock

        target = {"--out": out if out is not None else run / REPORT}
        read = (records.PREDICTIONS, records.METRICS, records.CONFIG, records.ENVIRONMENT)
        own = {f"RUN/{name}": run / name for name in (*read, records.TREC)} | {"RUN": run}
        check_outputs(target, own)
        rows = records.read_records(run)
        inputs = {input_label(key): path for key, path in recorded_inputs(run).items()}
        images = {
            f"the image of question {row.data_id}": _image_file(row.image, run)
            for row in rows
            if row.image
        }
        check_outputs(target, inputs | images)
        check_not_inside(target, inputs, allowed=[run])  # report.html goes in RUN itself
        most = None if all_questions else limit
        shown, _ = select_records(rows, only=only, limit=most)
        # the page's folder (RUN itself by default) is locked while it is written: a bench
        # still writing RUN, or another report into the same folder, is refused (a missing
        # folder is the writer's to refuse; a device such as /dev/null is not a folder's file)
        page = target["--out"]
        mine = page.parent.is_dir() and (page.is_file() or not page.exists())
        with FolderLock(page.parent) if mine else contextlib.nullcontext():
            path = write_report(run, out, limit=most, only=only, records=rows)
        say(f"report written to {path}")
        if as_json:
            print_json({"report": str(path), "questions": len(shown)})


def _image_file(image: str, run: Path) -> Path | None:
    """The file a record's image is read from: as written, else (relative) under the run
    directory, as the report looks for it; None when there is none."""
    path = Path(image)
    candidates = [path] if path.is_absolute() else [path, run / path]
    return next((p for p in candidates if p.is_file()), None)
