"""Where a pipeline file's paths point: relative to the file, under `${VAR}` roots, or a hub id.

`${RAGVQA_CACHE}` is the cache root (env `RAGVQA_CACHE`, default `~/.cache/ragvqa`); any other
`${VAR}` is read from the environment, against the working directory the pipeline was loaded
in. A folder a pipeline writes (a KB or index built on first use) may not be inside the
installed package. `Components` holds one `Locations` per pipeline.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.hub import resolve_input
from ragvqa.resources import cache_root

ENV_VAR = re.compile(r"\$\{(\w+)\}")  # `${RAGVQA_DATA}` in a path


class Locations:
    """The paths of one pipeline file (`folder`: the file's folder; `name`: for messages)."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = folder, name
        self.cwd = Path.cwd()  # what relative roots from the environment are read against

    def path(self, value: str) -> str:
        """A path from the file: `${VAR}`s expanded (`RAGVQA_CACHE`: the cache root), a
        relative root from the environment read against the working directory the pipeline
        was loaded in, then relative to the file's folder. A missing variable is one line."""

        def root(found: re.Match[str]) -> str:
            name = found.group(1)
            raw = cache_root() if name == "RAGVQA_CACHE" else os.environ.get(name)
            if not raw:
                how = "the data root (see docs/data.md)" if name == "RAGVQA_DATA" else "a folder"
                raise UserError(
                    f"{value} is under ${{{name}}}: set {name} to {how}", path=self.name or None
                )
            return str(self.cwd / Path(raw).expanduser())

        text = os.path.expanduser(ENV_VAR.sub(root, str(value)))
        return str(Path(text) if Path(text).is_absolute() else (self.folder / text).resolve())

    def model_ref(self, value: str) -> str:
        """A local model folder (relative to the file) when it exists or the value names a
        `${VAR}` root (an error then names the expanded path), else a hub id."""
        local = self.path(value)
        return local if Path(local).exists() or ENV_VAR.search(str(value)) else str(value)

    def writable(self, folder: Path, key: str) -> Path:
        """`folder` (what `key` names), refused in one line when it is inside the installed
        package or its shipped pipelines: a relative path or root read against the package."""
        from ragvqa.resources import resource_dir

        for inside in (Path(__file__).resolve().parent, resource_dir("pipelines").resolve()):
            if folder.resolve().is_relative_to(inside):
                raise UserError(
                    f"{key} is {folder}, inside ragvqa's installed files ({inside}): set "
                    "RAGVQA_CACHE, or give an absolute path",
                    path=self.name or None,
                )
        return folder

    def kb_source(self, source: dict[str, Any]) -> dict[str, Any]:
        """A `kb.source` mapping with its paths resolved (`input` may be an hf:// file,
        downloaded now)."""
        source = dict(source)
        given = str(source.get("input", ""))  # ${RAGVQA_DATA}/...: an error names the expansion
        source["input"] = resolve_input(self.path(given) if ENV_VAR.search(given) else given, self)
        for key in ("images_dir", "images_map"):
            if source.get(key):
                source[key] = self.path(source[key])
        return source
