"""Guarding a run directory: nothing in it changes until the new run is known to be valid.

`RunFolder` is entered before a run touches its directory. It refuses a path that is a file,
takes the directory's lock (`ragvqa.run.lock`: a second process on the same directory is told
who holds it), and compares the request with the `config.yaml` already there: a directory that
holds a run of another configuration is refused with every difference named (`dotted.key: old
-> new`), unless the caller overwrites it on purpose. A run of the same configuration resumes
(its journal and the stage cache do the rest). Only `commit()`, called once the inputs have been
read and checked, writes: the new `config.yaml` (when it changed) and, when overwriting, the
removal of the old run's results, so that the directory never mixes two runs. A directory that
the run created and that is still empty when it fails is removed again.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import yaml

from ragvqa.errors import UserError
from ragvqa.io import atomic_writer
from ragvqa.run import records
from ragvqa.run.lock import FolderLock

# what a finished run holds besides its config: removed when another configuration replaces it
RESULTS = (records.PREDICTIONS, records.METRICS, records.TREC, records.ENVIRONMENT, "report.html")
SHOWN_CHANGES = 6  # differences named in a refusal (the rest are counted)
_ABSENT = object()


class RunFolder:
    """The run directory of one process: `with RunFolder(path) as folder: folder.check(...)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.created = False
        self.lock = FolderLock(self.path)

    def __enter__(self) -> RunFolder:
        if self.path.exists() and not self.path.is_dir():
            raise UserError("is a file, expected a run folder (--out)", path=str(self.path))
        self.created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"cannot create the run folder ({exc.strerror})"
            raise UserError(problem, path=str(self.path)) from None
        self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
        if self.created:
            with contextlib.suppress(OSError):  # not empty: the run wrote something
                self.path.rmdir()

    def check(self, config: dict[str, Any], *, overwrite: bool = False) -> list[str]:
        """The differences between the run already here and `config` (empty for a new
        directory or a resume of the same configuration).

        Raises:
            UserError: the directory holds another run, or files this run would replace, and
                `overwrite` is false.
        """
        old = self._old_config()
        if old is None:
            clash = [n for n in (*RESULTS, records.WORK) if (self.path / n).exists()]
            if clash and not overwrite:
                raise UserError(
                    f"holds {', '.join(clash)} but no {records.CONFIG}: not a run of ragvqa bench; "
                    "use another --out, or --overwrite to replace them",
                    path=str(self.path),
                )
            return [f"{name} without {records.CONFIG}" for name in clash]
        changes = config_changes(old, _normal(config))
        if changes and not overwrite:
            more = len(changes) - SHOWN_CHANGES
            named = "; ".join(changes[:SHOWN_CHANGES]) + (f"; and {more} more" if more > 0 else "")
            raise UserError(
                f"holds a run of another configuration ({named}): use another --out, or "
                "--overwrite to replace it",
                path=str(self.path),
            )
        return changes

    def commit(self, config: dict[str, Any], *, replace: bool) -> None:
        """Write `config.yaml` (unless it already says the same); with `replace`, first remove
        the results of the run that was here."""
        if replace:
            for name in RESULTS:
                (self.path / name).unlink(missing_ok=True)
        if self._old_config() == _normal(config):
            return
        with atomic_writer(self.path / records.CONFIG) as fh:
            yaml.safe_dump(config, fh, sort_keys=False, allow_unicode=True)

    def _old_config(self) -> dict[str, Any] | None:
        path = self.path / records.CONFIG
        if not path.is_file():
            return None
        try:
            old = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"not a readable run config ({problem})", path=str(path)) from None
        return old if isinstance(old, dict) else {}


def config_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """`dotted.key: old -> new` for every value that differs (keys of both, old order first)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [f"{prefix or '(config)'}: {_show(old)} -> {_show(new)}"]
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {_show(a)} -> {_show(b)}")
    return out


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    return json.dumps(value, ensure_ascii=False, default=str)


def _normal(config: dict[str, Any]) -> Any:
    """`config` as it reads back from YAML (tuples become lists, ...), for comparison."""
    return yaml.safe_load(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
