"""Where ragvqa finds its files: the resources it ships and the folders it keeps.

Shipped resources (prompt templates, pipelines, benchmark files) are the repository's top-level
`prompts/`, `pipelines/` and `benchmarks/` folders. A built wheel packs them inside the package
as `ragvqa/_resources/<kind>/`; `resource_dir` finds them there through `importlib.resources`,
and in a source checkout (an editable install, `pip install -e .`) it reads the checkout's live
top-level folders. Installs that leave ragvqa zipped (zipimport) are not supported: callers glob
and read real files.

The cache (`$RAGVQA_CACHE`, default `~/.cache/ragvqa`) holds built KBs, indexes and stage outputs.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

KINDS = ("prompts", "pipelines", "benchmarks")


def resource_dir(kind: str) -> Path:
    """The folder of shipped `kind` files ("prompts", "pipelines" or "benchmarks").

    The folder inside an installed wheel, else the top-level folder of the source checkout that
    ragvqa is imported from. The path is returned even when it does not exist, so the caller can
    name it in its error.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r} (one of {', '.join(KINDS)})")
    shipped = files("ragvqa._resources") / kind
    if isinstance(shipped, Path) and shipped.is_dir():
        return shipped
    checkout = Path(str(files("ragvqa"))).parent
    if (checkout / "pyproject.toml").is_file() and (checkout / kind).is_dir():
        return checkout / kind
    return Path(str(shipped))


def cache_root() -> Path:
    """ragvqa's cache: `$RAGVQA_CACHE`, else `~/.cache/ragvqa`."""
    return Path(os.environ.get("RAGVQA_CACHE") or Path.home() / ".cache" / "ragvqa").expanduser()
