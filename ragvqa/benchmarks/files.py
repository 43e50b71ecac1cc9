"""Which files a command reads for a benchmark: `--file ROLE=PATH` and the familiar flags.

A plug-in declares its file roles (`Benchmark.roles`); `ragvqa bench` and `ragvqa score` take
any of them as `--file ROLE=PATH` (repeatable), and the flags `--questions`, `--qtypes`,
`--withkb` and `--bem` stay as aliases of the roles of those names. A role the plug-in does
not declare, a malformed `--file` or a role given twice is a one-line error naming the roles
the plug-in has. Files not given come from a `benchmarks.yaml` beside the pipeline file when it
names the benchmark (`pipeline_defaults`: a world of one's own, such as the demo's), else from the
plug-in's `benchmark.yaml` defaults (`choose_files`), with the `ragvqa data fetch` command of a
missing one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ragvqa.benchmarks.base import Benchmark
from ragvqa.errors import UserError, did_you_mean

ALIASES = ("questions", "qtypes", "withkb", "bem")  # roles that have a flag of their own


def flag(role: str) -> str:
    """How a role is given on the command line: `--qtypes`, or `--file glossary=PATH`."""
    return f"--{role}" if role in ALIASES else f"--file {role}=PATH"


def _unknown(benchmark: Benchmark, role: str, shown: str) -> UserError:
    roles = ", ".join(benchmark.roles) or "none"
    hint = did_you_mean(role, list(benchmark.roles))
    return UserError(
        f"benchmark {benchmark.name!r} reads no {shown} file (its file roles: {roles}){hint}"
    )


def given_files(
    benchmark: Benchmark, pairs: Sequence[str], aliases: Mapping[str, Path | None]
) -> dict[str, Path]:
    """The files given for `benchmark`, by role: `pairs` from `--file ROLE=PATH`, `aliases`
    from the flags (role -> path, None when not given).

    Raises:
        UserError: a `--file` without `=`, a role the benchmark does not declare, or one role
            given twice.
    """
    files: dict[str, Path] = {}
    for role, path in aliases.items():
        if path is not None:
            if role not in benchmark.roles:
                raise _unknown(benchmark, role, f"--{role}")
            files[role] = path
    for pair in pairs:
        role, sep, path = pair.partition("=")
        role = role.strip()
        if not sep or not role or not path:
            raise UserError(f"--file expects ROLE=PATH, not {pair!r}")
        if role not in benchmark.roles:
            raise _unknown(benchmark, role, repr(role))
        if role in files:
            raise UserError(f"the {role} file is given twice ({files[role]} and {path})")
        files[role] = Path(path)
    return files


def fetch_hint(benchmark: Benchmark, role: str) -> str:
    """How to get a benchmark file: its catalogue name from benchmark.yaml's `data:` mapping."""
    name = benchmark.catalogue_names().get(role)
    if not name:
        return "see docs/data.md"
    return f"`ragvqa data fetch {name} --to $RAGVQA_DATA` provides it"


def choose_files(
    benchmark: Benchmark,
    files: Mapping[str, Path | None],
    defaults: Mapping[str, Any],
    *,
    optional_defaults: bool = True,
    note: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """The file of each role: the one given, else the default when it is on disk. A required
    role without either is an error naming the fetch command (or the option to pass); an
    optional one is left out, with its `note` said through `note`. `optional_defaults=False`
    (`ragvqa score`): an optional file is read only when given, since it changes the scores.

    Raises:
        UserError: a file of a role the benchmark does not declare, or a required file missing.
    """
    for role, value in files.items():
        if value is not None and role not in benchmark.roles:
            raise _unknown(benchmark, role, f"--{role}")
    chosen: dict[str, str] = {}
    for role, kind in benchmark.roles.items():
        given, default = files.get(role), defaults.get(role)
        if not kind.required and not optional_defaults:
            default = None
        if given is not None:
            chosen[role] = str(given)
        elif default and Path(default).exists():
            chosen[role] = str(default)
        elif kind.required and default:
            raise UserError(f"file not found; {fetch_hint(benchmark, role)}", path=default)
        elif kind.required:
            raise UserError(
                f"no {role} file: pass {flag(role)}, or set RAGVQA_DATA for the paths in "
                f"{benchmark.folder() / 'benchmark.yaml'}"
            )
        elif default and kind.note and note is not None:
            note(f"note: {default} not found, {kind.note} ({fetch_hint(benchmark, role)})")
    return chosen


LOCAL_FILES = "benchmarks.yaml"


def pipeline_defaults(pipeline: Path | None, benchmark: Benchmark) -> dict[str, Any] | None:
    """The default files of `benchmark` for a pipeline file's own world: its entry in the
    `benchmarks.yaml` beside the pipeline (roles and `images:` roots, relative to that file),
    or None when there is no such file or entry."""
    from ragvqa.config import read_yaml

    path = pipeline.parent / LOCAL_FILES if pipeline is not None and pipeline.is_file() else None
    if path is None or not path.is_file():
        return None
    entry = read_yaml(path).get(benchmark.name)
    if entry is None:
        return None
    images = entry.get("images", {}) if isinstance(entry, dict) else None
    if not isinstance(images, dict):
        raise UserError(f"{benchmark.name}: expected roles and an images: mapping", path=str(path))
    files = {k: v for k, v in entry.items() if k != "images"}
    for key, value in [*files.items(), *(("images." + k, v) for k, v in images.items())]:
        if not (key in benchmark.roles or key.startswith("images.")) or not isinstance(value, str):
            raise UserError(f"{benchmark.name}.{key}: not a file of the benchmark", path=str(path))
    local = {k: str(path.parent / v) for k, v in files.items()}
    return local | {"images": {k: str(path.parent / v) for k, v in images.items()}}
