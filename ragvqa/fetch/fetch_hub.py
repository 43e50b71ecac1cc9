"""Hub artefacts into the data root, through `huggingface_hub` (imported only here).

A single file (`filename`) or a snapshot (the whole repo, or the files matching `include`) is
downloaded with `local_dir=<root>/<dest>`, so the repository's layout is replicated there.
Offline (HF_HUB_OFFLINE=1) or without a connection, a copy already in the hub cache is
hard-linked (copied across file systems) into the data root instead. A file with a catalogue
sha256 is checked and moved aside when it does not match; a complete snapshot gets a marker
(`<dest>/.cache/ragvqa/<name>.done`) so `status` can tell it from an interrupted one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError, first_line
from ragvqa.fetch.catalogue import Artefact
from ragvqa.fetch.landing import (
    check_destination,
    marker_path,
    matches,
    part_path,
    reject_if_bad,
)


def fetch_hub(artefact: Artefact, root: str | Path) -> Path:
    """A hub file or snapshot under `<root>/<dest>` (see the module docstring)."""
    folder = artefact.folder(root)
    check_destination(folder, artefact.size)
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise UserError("hub artefacts need huggingface_hub: pip install huggingface_hub") from None
    where = dict(repo_id=artefact.repo, repo_type=artefact.repo_type, revision=artefact.revision)
    patterns = list(artefact.include) or None
    try:
        try:
            if artefact.filename:
                hf_hub_download(filename=artefact.filename, local_dir=folder, **where)
            else:
                snapshot_download(allow_patterns=patterns, local_dir=folder, **where)
        except LocalEntryNotFoundError:  # offline or unreachable: the hub cache may have it
            _from_hub_cache(artefact, folder, where)
    except UserError:
        raise
    except LocalEntryNotFoundError:
        raise UserError(
            f"cannot fetch {artefact.name}: the hub ({artefact.repo}) is not reachable and the "
            "local hub cache does not have it"
        ) from None
    except Exception as exc:  # unknown or gated repo, revision, HTTP errors: one line
        first = first_line(exc)
        raise UserError(
            f"cannot fetch {artefact.name} from the hub ({artefact.repo}): {first}"
        ) from None
    path = artefact.path(root)
    if artefact.filename:
        exact = artefact.size if artefact.size_exact else None
        reject_if_bad(path, path, sha256=artefact.sha256, size=exact)
    else:
        marker = marker_path(artefact, root)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{artefact.repo}@{artefact.revision or 'main'}\n", encoding="utf-8")
    return path


def _from_hub_cache(artefact: Artefact, folder: Path, where: dict[str, Any]) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download

    if artefact.filename:
        cached = hf_hub_download(filename=artefact.filename, local_files_only=True, **where)
        _place(Path(cached), folder / artefact.filename)
        return
    snapshot = Path(snapshot_download(local_files_only=True, **where))
    for source in sorted(snapshot.rglob("*")):
        relative = source.relative_to(snapshot).as_posix()
        if source.is_file() and (not artefact.include or matches(relative, artefact.include)):
            _place(source, folder / relative)


def _place(source: Path, target: Path) -> None:
    """Hard-link (or copy) a hub-cache file to `target`, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = part_path(target)
    temporary.unlink(missing_ok=True)
    try:
        os.link(source.resolve(), temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)
