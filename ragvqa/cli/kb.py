"""`ragvqa kb build | info`: knowledge bases as passage stores.

`build` holds `--out`'s lock (`ragvqa.run.lock`) while it writes: a second process on the same
folder is refused at once, naming the holder.

Results go to stdout (`info`'s table, tab-separated rows in a pipe; JSON with `--json`, `build`
included); progress and `build`'s summary line go to stderr.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ragvqa.cli.common import print_json, show_mapping, stderr, user_errors
from ragvqa.schema.options import from_options, option
from ragvqa.schema.sections import KBSource

app = typer.Typer(help="Build and inspect knowledge bases.", no_args_is_help=True)


@app.command("build")
def build(
    fmt: str = option(KBSource, "format"),
    input: str = option(KBSource, "input"),
    out: Path = typer.Option(..., "--out", help="KB folder to create (or resume)."),
    chunking: str = option(KBSource, "chunking"),
    max_tokens: int = option(KBSource, "max_tokens"),
    subset: str = option(KBSource, "subset"),
    split: str = option(KBSource, "split"),
    images_dir: str = option(KBSource, "images_dir"),
    images_map: str = option(KBSource, "images_map"),
    shard_pages: int = option(KBSource, "shard_pages"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print JSON on stdout: the KB folder, its counts and fingerprint (as kb info --json).",
    ),
) -> None:
    """Stream a KB into passages (Arrow on disk); run again to resume after a kill. The options
    are the keys of a pipeline's `kb.source` (docs/pipeline-reference.md)."""
    with user_errors():
        from ragvqa.kb.build import BuildParams, build_kb

        source = from_options(
            KBSource,
            {
                "format": fmt,
                "input": input,
                "chunking": chunking,
                "max_tokens": max_tokens,
                "subset": subset,
                "split": split,
                "images_dir": images_dir,
                "images_map": images_map,
                "shard_pages": shard_pages,
            },
        )
        params = BuildParams(**source.model_dump())
        from ragvqa.io import check_output_folder
        from ragvqa.kb.store import MANIFEST, STATE
        from ragvqa.run.lock import locked_folder

        inputs = {"--input": input, "--images-dir": images_dir or None}
        inputs["--images-map"] = images_map or None
        check_output_folder(out, (MANIFEST, STATE, "passages"), inputs, option="--out")
        with locked_folder(out):  # a second build on --out is refused, naming this one
            manifest = build_kb(params, out, progress=progress)
        duplicates = manifest.get("duplicate_pages") or 0  # KBs built before it was counted
        stderr.print(
            f"{manifest['pages']} pages -> {manifest['passages']} passages, "
            f"{manifest['skipped_entries']} entries skipped"
            + (f" ({duplicates} duplicate pages, first kept)" if duplicates else "")
            + f", {manifest['images']} images "
            f"({manifest['missing_images']} missing) in {out}",
            highlight=False,
            markup=False,
        )
        if as_json:
            from ragvqa.kb.store import KBStore

            shards = len(manifest["shards"])
            print_json({"path": str(out), **KBStore(out).info(), "shard_count": shards})


@app.command("info")
def info(
    folder: Path = typer.Argument(..., help="A KB folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Counts and provenance of a built KB."""
    with user_errors():
        from ragvqa.kb.store import KBStore

        data = KBStore(folder).info()
        show_mapping(str(folder), data, as_json)
