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

An output may not be an input: `config.yaml`'s `inputs` names every file and folder a run reads
(its benchmark files and image folders, the pipeline file, the encoder, KB, KB source, index,
reader and reranker), resolved (`pipeline_inputs`, `input_label`); the runner refuses a run
folder that is or lies inside one of them, and `ragvqa report` an `--out` that is one of them,
one of the run's images, or lies inside one of the folders (`check_not_inside`, beside
`ragvqa.io.check_outputs`). `inputs` is where the run read from, not what it is: it is left out
of the comparison of configurations (paths compare as typed).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ragvqa.errors import UserError, first_line
from ragvqa.io import PathLike, atomic_writer
from ragvqa.resources import cache_root
from ragvqa.run import records
from ragvqa.run.lock import FolderLock

# what a finished run holds besides its config: removed when another configuration replaces it
RESULTS = (records.PREDICTIONS, records.METRICS, records.TREC, records.ENVIRONMENT, "report.html")
SHOWN_CHANGES = 6  # differences named in a refusal (the rest are counted)
INPUTS = "inputs"  # config.yaml's mapping: every file and folder the run reads, resolved
_ABSENT = object()
# the pipeline keys that name a file or folder a run reads, with the name an error uses
PIPELINE_PATHS = {
    "encoder.model": "the encoder",
    "kb.path": "the KB",
    "kb.source.input": "the KB's source",
    "kb.source.images_dir": "the KB's image folder",
    "kb.source.images_map": "the KB's image map",
    "index.path": "the index",
    "reader.generator.model": "the reader",
    "reader.generator.tokenizer": "the reader's tokenizer",
    "rerank.model": "the reranker",
}
MODELS = ("encoder.model", "reader.generator.model", "reader.generator.tokenizer", "rerank.model")


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
        changes = config_changes(_compared(old), _compared(_normal(config)))
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
        old = _read_config(path)
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


def _compared(config: dict[str, Any]) -> dict[str, Any]:
    """A run's configuration as runs are compared: without where its inputs were read from,
    and without the pipeline's `execution` section (local or Ray: the same answers, so a run
    may resume on another executor)."""
    out = {k: v for k, v in config.items() if k != INPUTS}
    if isinstance(out.get("pipeline"), dict):
        out["pipeline"] = {k: v for k, v in out["pipeline"].items() if k != "execution"}
    return out


def pipeline_inputs(
    config: Mapping[str, Any],
    resolve: Callable[[str], str | None],
    *,
    reader: bool = True,
    kb: bool = False,
) -> dict[str, str]:
    """The files and folders a pipeline configuration reads, by dotted key ("pipeline.kb.path"),
    as `resolve` gives them (None: not a local path, e.g. a hub id): the retrieval stages' by
    `retrieval.mode`, the KB's also when `kb` (a baseline reads it), the reader's when
    `reader`."""
    retrieval = config.get("retrieval")
    mode = (retrieval.get("mode") if isinstance(retrieval, Mapping) else None) or "index"
    stages = {"index": ("encoder", "kb", "index", "rerank"), "oracle": ("kb",), "none": ()}
    wanted = stages.get(mode, ())
    wanted += ("kb",) * kb + ("reader",) * reader
    out = {}
    for key in PIPELINE_PATHS:
        if key.split(".")[0] not in wanted:
            continue
        value: Any = config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str) and value and "://" not in value:
            path = resolve(value)
            if path is not None and (key not in MODELS or os.path.exists(path)):
                out[f"pipeline.{key}"] = path  # a model that is no local path is a hub id
    return out


def input_label(key: str) -> str:
    """How an error names an input of `config.yaml`'s `inputs` ("the questions file", "the
    oven image folder", "the KB (kb.path)")."""
    parts = key.split(".")
    if parts[:2] == ["benchmark", "files"]:
        return f"the {'.'.join(parts[2:])} file"
    if parts[:2] == ["benchmark", "images"]:
        return f"the {'.'.join(parts[2:])} image folder"
    if key == "pipeline.file":
        return "the pipeline file"
    dotted = ".".join(parts[1:])
    return f"{PIPELINE_PATHS.get(dotted, 'the input')} ({dotted})"


def recorded_inputs(run: Path) -> dict[str, str]:
    """Every file and folder the run in `run` read, by dotted key, from its `config.yaml`:
    its `inputs` (resolved when the run was made); for a run made before they were recorded,
    the benchmark files and image folders as typed and the pipeline's absolute paths."""
    config = _read_config(run / records.CONFIG)
    if not isinstance(config, dict):
        return {}
    recorded = config.get(INPUTS)
    if isinstance(recorded, dict):
        return {str(k): str(v) for k, v in recorded.items() if isinstance(v, str) and v}
    benchmark = config.get("benchmark") if isinstance(config.get("benchmark"), dict) else {}
    out = {}
    for group in ("files", "images"):
        entries = benchmark.get(group)
        for name, path in (entries if isinstance(entries, dict) else {}).items():
            if isinstance(path, str) and path:
                out[f"benchmark.{group}.{name}"] = path
    pipeline = config.get("pipeline")
    if isinstance(pipeline, dict):

        def absolute(value: str) -> str | None:  # relative ones: to an unknown folder
            text = value.replace("${RAGVQA_CACHE}", str(cache_root()))
            path = os.path.expanduser(os.path.expandvars(text))
            return path if os.path.isabs(path) else None

        reader = not benchmark.get("retrieval_only")
        kb = bool(reader and benchmark.get("baselines"))
        out |= pipeline_inputs(pipeline, absolute, reader=reader, kb=kb)
    return out


def check_not_inside(
    outputs: Mapping[str, PathLike],
    inputs: Mapping[str, PathLike],
    *,
    allowed: Iterable[PathLike] = (),
) -> None:
    """Refuse an output that lies inside an input folder (writing there could replace a file
    of it, or be read as one). An output inside an `allowed` folder (the run's own, where
    `report.html` goes) is left to `ragvqa.io.check_outputs`. Paths are compared resolved
    (links followed), so a path through a link to the folder is caught too.

    Raises:
        UserError: naming the output and the folder.
    """

    def within(path: str, folder: str) -> bool:
        return path.startswith(folder.rstrip(os.sep) + os.sep)

    own = [os.path.realpath(p) for p in allowed if p is not None]
    folders = [
        (name, os.path.realpath(p))
        for name, p in inputs.items()
        if p is not None and os.path.isdir(p)
    ]
    for name, out in outputs.items():
        if out is None:
            continue
        target = os.path.realpath(out)
        if any(target == f or within(target, f) for f in own):
            continue
        for other, folder in folders:
            if within(target, folder):
                raise UserError(
                    f"{name} is inside {other} ({folder}); refusing to write into an input",
                    path=str(out),
                )


def _read_config(path: Path) -> Any:
    """A run's `config.yaml` as YAML reads it (None when there is none).

    Raises:
        UserError: it is not YAML (or not UTF-8).
    """
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = first_line(exc)
        raise UserError(f"not a readable run config ({problem})", path=str(path)) from None
