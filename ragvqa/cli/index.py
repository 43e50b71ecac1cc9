"""`ragvqa index build | info | verify`: vector indexes over a KB's passages.

`build` holds `--out`'s lock (`ragvqa.run.lock`) while it writes: a second process on the same
folder is refused at once, naming the holder.

Results go to stdout (`info`'s table, tab-separated rows in a pipe; JSON with `--json`, `build`
included); progress and the summary and verdict lines go to stderr.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ragvqa.cli.common import print_json, show_mapping, stderr, user_errors
from ragvqa.schema.options import from_options, option
from ragvqa.schema.sections import EncoderSection, FaissSection, IndexSection

app = typer.Typer(help="Build, inspect and verify passage indexes.", no_args_is_help=True)


@app.command("build")
def build(
    kb: Path = typer.Option(..., "--kb", help="A KB folder (ragvqa kb build)."),
    encoder: str = typer.Option(
        ...,
        "--encoder",
        help="Encoder: a ReT checkpoint (folder or hub id) or a sentence-transformers folder "
        "(a text encoder: has modules.json).",
    ),
    out: Path = typer.Option(..., "--out", help="Index folder to create (or resume)."),
    kind: str = option(FaissSection, "kind", "--type"),
    nlist: int = option(FaissSection, "nlist"),
    m: int = option(FaissSection, "m", "--pq-m"),
    nbits: int = option(FaissSection, "nbits"),
    nprobe: int = option(FaissSection, "nprobe"),
    refine: int = option(FaissSection, "refine"),
    hnsw_m: int = option(FaissSection, "hnsw_m"),
    ef_construction: int = option(FaissSection, "ef_construction"),
    ef_search: int = option(FaissSection, "ef_search"),
    doc_template: str | None = option(IndexSection, "doc_template"),
    batch_size: int = option(EncoderSection, "batch_size"),
    rows_per_shard: int = typer.Option(8192, "--rows-per-shard", help="Rows per embedding shard."),
    device: str | None = option(EncoderSection, "device"),
    dtype: str | None = typer.Option(
        None,
        "--dtype",
        help="Encoder dtype: bfloat16 | float16 | float32 (default: bfloat16 on CUDA, else "
        "float32; bfloat16 is also fast on CPUs with AVX-512 BF16 or AMX).",
    ),
    engine: str = typer.Option("local", "--engine", help="local | ray (a Ray Data job)."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster address (default: a local Ray)."
    ),
    ray_actors: int = typer.Option(0, "--ray-actors", help="Encoder actors (0: one per GPU)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print JSON on stdout: the index folder, what index info --json shows, and each "
        "file's size and sha256.",
    ),
) -> None:
    """Encode the KB's passages (resumable shards) and build the faiss index. The faiss options
    are the keys of a pipeline's `index.faiss` (docs/pipeline-reference.md); `--type` and
    `--pq-m` are the old names of `--kind` and `--m`."""
    with user_errors():
        from ragvqa.index.build import IndexParams, build_index
        from ragvqa.index.faiss_index import FaissParams

        faiss = from_options(
            FaissSection,
            {
                "kind": kind,
                "nlist": nlist,
                "m": m,
                "nbits": nbits,
                "nprobe": nprobe,
                "refine": refine,
                "hnsw_m": hnsw_m,
                "ef_construction": ef_construction,
                "ef_search": ef_search,
            },
        )
        params = IndexParams(
            kb=str(kb),
            encoder=encoder,
            doc_template=doc_template,
            batch_size=batch_size,
            rows_per_shard=rows_per_shard,
            engine=engine,
            ray_address=ray_address,
            ray_actors=ray_actors,
            dtype=dtype,
            faiss=FaissParams(**faiss.model_dump()),
        )
        from ragvqa.index import manifest as files
        from ragvqa.io import check_output_folder
        from ragvqa.run.lock import locked_folder

        written = (files.MANIFEST, files.BUILD, files.FAISS_FILE, files.VECTORS_FILE, "emb")
        check_output_folder(out, written, {"--kb": kb, "--encoder": encoder}, option="--out")
        with locked_folder(out):  # a second build on --out is refused, naming this one
            manifest = build_index(params, out, device=device, progress=progress)
        stderr.print(
            f"{manifest['documents']} passages, {manifest['index_vectors']} vectors "
            f"({manifest['vectors_per_document']} x {manifest['dim']} per passage), "
            f"{manifest['faiss']['kind']} index in {out}",
            highlight=False,
            markup=False,
        )
        if as_json:
            from ragvqa.index.manifest import summary

            print_json({"path": str(out), **summary(manifest), "files": manifest["files"]})


def _open(folder: Path, kb: Path | None):
    from ragvqa.index.manifest import read_manifest
    from ragvqa.kb.store import KBStore

    manifest = read_manifest(folder)
    return manifest, KBStore(kb or manifest["kb"]["path"])


@app.command("info")
def info(
    folder: Path = typer.Argument(..., help="An index folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """What an index was built from, and its size."""
    with user_errors():
        from ragvqa.index.manifest import read_manifest, summary

        data = summary(read_manifest(folder))
        show_mapping(str(folder), data, as_json)


@app.command("verify")
def verify(
    folder: Path = typer.Argument(..., help="An index folder."),
    kb: Path | None = typer.Option(
        None, "--kb", help="KB to check against (default: the one recorded in the manifest)."
    ),
) -> None:
    """Re-hash every file against the manifest's sha256, check counts, and check the KB
    fingerprint; exit 2 on a mismatch."""
    with user_errors():
        from ragvqa.index.manifest import QUICK, check_files, check_kb
        from ragvqa.index.search import PassageIndex

        manifest, store = _open(folder, kb)
        check_files(folder, manifest, hashes=True)
        check_kb(manifest, store)
        PassageIndex(folder, store)  # loads the faiss index and checks its vector count
        old = any(QUICK not in meta for meta in manifest["files"].values())
        note = (
            "; no head-tail fingerprints (an older build): opening it checks sizes only, "
            "building again in this folder records them (the stored vectors are reused)"
        )
        stderr.print(
            f"OK: {len(manifest['files'])} files, {manifest['index_vectors']} vectors, "
            f"KB {manifest['kb']['fingerprint']}" + (note if old else ""),
            highlight=False,
        )
