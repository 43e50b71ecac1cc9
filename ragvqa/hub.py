"""Inputs that live on the Hugging Face hub, named in pipeline files as
`hf://datasets/<org>/<name>/<path in the repo>` (or `hf://<org>/<name>/<path>` for a model repo).

The file is downloaded once into the hub cache (resumable, checksummed by huggingface_hub).
Offline, the error is one line naming the file and how to pass a local copy instead.
`load_rows` reads a hub dataset's split (M2KR's questions and passages) the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragvqa.errors import UserError, first_line

PREFIX = "hf://"


def parse(uri: str) -> tuple[str, str, str]:
    """(repo_type, repo_id, filename) of an hf:// URI."""
    rest = uri[len(PREFIX) :]
    repo_type = "model"
    if rest.startswith(("datasets/", "models/")):
        kind, rest = rest.split("/", 1)
        repo_type = kind[:-1]
    parts = rest.split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise UserError(f"{uri!r} must look like hf://datasets/<org>/<name>/<file>")
    return repo_type, f"{parts[0]}/{parts[1]}", parts[2]


def resolve_input(value: str, pipeline: Any) -> str:
    """A local path for a pipeline input: an hf:// file downloaded now, else the path itself
    (relative to the pipeline file; a hub dataset id such as for the m2kr format is kept)."""
    if not value:
        raise UserError("kb.source needs an 'input'", path=getattr(pipeline, "name", None))
    if not value.startswith(PREFIX):
        local = pipeline.path(value)
        return local if Path(local).exists() else value
    repo_type, repo_id, filename = parse(value)
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo_id=repo_id, filename=filename, repo_type=repo_type)
    except Exception as exc:  # offline, unknown repo, gated
        first = first_line(exc)
        raise UserError(
            f"cannot download {value} ({first}); without internet, download it elsewhere and "
            "pass it with --set kb.source.input=/path/to/file (or a built KB with "
            "--set kb.path=DIR)"
        ) from None


def load_rows(source: str, config: str, split: str) -> Any:
    """The rows of `config`/`split` of a hub dataset through `datasets`: from the hub when
    `source` is a dataset id, or from a local folder in the hub's layout
    (`<source>/<config>/<split>-*.parquet`), for tests and offline users. Shared by the M2KR
    benchmark loader (`ragvqa.data.m2kr`) and the M2KR passage KB reader (`ragvqa.kb.readers`),
    which is why it lives here, below both."""
    import datasets

    local = Path(source)
    if local.is_dir():
        files = sorted((local / config).glob(f"{split}-*.parquet")) + sorted(
            (local / config).glob(f"{split}.parquet")
        )
        if not files:
            raise UserError(f"no {config}/{split}-*.parquet files", path=str(local))
        return datasets.load_dataset(
            "parquet", data_files={split: [str(f) for f in files]}, split=split
        )
    try:
        return datasets.load_dataset(source, config, split=split)
    except Exception as exc:  # network, auth, unknown split: one line for the user
        first = first_line(exc)
        raise UserError(
            f"cannot load {config}/{split} from the hub ({first}); "
            "pass a local copy in the hub's layout instead",
            path=source,
        ) from None
