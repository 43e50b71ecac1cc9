"""What a benchmark plug-in declares: its files, loader, scorer, headline metrics and more.

A benchmark is one module under `ragvqa/benchmarks/` with a subclass of `Benchmark`, registered
by name in `ragvqa.registry.BENCHMARKS` (or, from another package, in the `ragvqa.benchmarks`
entry-point group), plus one YAML file, `benchmarks/<name>/benchmark.yaml`, with the default
files under `${RAGVQA_DATA}` and the data-catalogue entries that provide them (the one place
that maps a benchmark to its data). Nothing outside the plug-in modules knows a benchmark by
name: the runner, `bench`, `score`, `compare` and `data verify` ask the plug-in.

A benchmark without answers to score (`scores_answers = False`, e.g. a passage-retrieval task)
is run retrieval-only: recall@K without loading a reader.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ragvqa.config import read_yaml
from ragvqa.data.images import ImageRoots, resolve_images
from ragvqa.errors import UserError
from ragvqa.eval.names import metric_label
from ragvqa.eval.predictions import coverage_line, load_predictions
from ragvqa.resources import resource_dir
from ragvqa.types import BenchmarkExample, ExampleScore, MetricResult, Prediction

DATA_VAR = "${RAGVQA_DATA}"


@dataclass(frozen=True)
class FileRole:
    """A file a benchmark reads besides its images: `questions`, `qtypes`, `withkb`, `bem`...

    `required`: the run cannot start without it; an optional file whose default is absent is
    left out, with `note` (what is lost) printed when there is one.
    """

    required: bool = True
    help: str = ""
    note: str = ""


class Benchmark(ABC):
    """A benchmark plug-in. Subclasses set the class attributes and implement `load`."""

    name: ClassVar[str]
    title: ClassVar[str] = ""
    roles: ClassVar[Mapping[str, FileRole]] = {"questions": FileRole(help="questions file")}
    image_root: ClassVar[str] = ""  # the image-root key that `--images` sets
    headline: ClassVar[tuple[str, ...]] = ()  # official metrics shown first (dotted keys)
    scores_answers: ClassVar[bool] = True  # False: retrieval only (no reader, no `score`)

    # -- files ----------------------------------------------------------------------------------
    def folder(self) -> Path:
        """Where benchmark.yaml and expected.yaml are (shipped: benchmarks/<name>/)."""
        return resource_dir("benchmarks") / self.name

    def defaults(self, root: str | None = None) -> dict[str, Any]:
        """benchmark.yaml with ${RAGVQA_DATA} replaced by `root` (default: the environment
        variable); a path under an unset data root is left out. A relative file path (a role's
        or an image root's, without `${`) is relative to benchmark.yaml's folder (a file
        shipped with the benchmark)."""
        path = self.folder() / "benchmark.yaml"
        if not path.is_file():
            return {}
        root = root if root is not None else os.environ.get("RAGVQA_DATA")

        def local(value: Any) -> Any:
            if isinstance(value, str) and value and "${" not in value:
                return str(path.parent / value) if not Path(value).is_absolute() else value
            return value

        raw = read_yaml(path)
        for key in self.roles:
            if key in raw:
                raw[key] = local(raw[key])
        if isinstance(raw.get("images"), dict):
            raw["images"] = {k: local(v) for k, v in raw["images"].items()}

        def expand(value: Any) -> Any:
            if isinstance(value, dict):
                pairs = ((k, expand(v)) for k, v in value.items())
                return {k: v for k, v in pairs if v is not None}
            if isinstance(value, str) and DATA_VAR in value:
                return value.replace(DATA_VAR, root) if root else None
            return value

        return expand(raw)

    def catalogue_names(self) -> dict[str, str]:
        """File role (questions, images.oven, ...) -> the data-catalogue entry providing it."""
        return dict(self.defaults().get("data") or {})

    def expected_runs(self) -> tuple[Path, list[dict[str, Any]]]:
        """expected.yaml's runs (pyserini style: command, metrics, tolerance) and its path."""
        path = self.folder() / "expected.yaml"
        return path, list((read_yaml(path) if path.is_file() else {}).get("runs") or [])

    # -- data -----------------------------------------------------------------------------------
    @abstractmethod
    def load(self, files: Mapping[str, str]) -> list[BenchmarkExample]:
        """The questions, from the files of `roles` (a role's absent optional file is not in
        `files`). Image paths are resolved by the runner."""

    def resolve_images(
        self, examples: Sequence[BenchmarkExample], roots: Mapping[str, str]
    ) -> tuple[list[BenchmarkExample], list[str]]:
        """The examples with `image_path` set where the image is under `roots` (image-root key
        -> folder, as in benchmark.yaml's `images:`), and the ids of those without one."""
        unknown = sorted(set(roots) - set(ImageRoots.__dataclass_fields__))
        if unknown:
            raise UserError(f"benchmark {self.name!r}: unknown image roots {unknown}")
        return resolve_images(examples, ImageRoots(**roots))

    def missing_images(
        self, files: Mapping[str, str], roots: Mapping[str, str]
    ) -> tuple[int, list[str]]:
        """(questions, ids of those whose image is not under `roots`): `ragvqa data verify`."""
        known = {k: v for k, v in roots.items() if k in ImageRoots.__dataclass_fields__}
        examples = self.load(files)
        _, missing = self.resolve_images(examples, known)
        return len(examples), missing

    # -- scoring --------------------------------------------------------------------------------
    def score(
        self,
        predictions: Sequence[Prediction],
        examples: Sequence[BenchmarkExample],
        files: Mapping[str, str],
    ) -> MetricResult:
        """The official scores of the predictions (a benchmark that `scores_answers`)."""
        raise UserError(f"benchmark {self.name!r} scores no answers (it is retrieval only)")

    def score_file(self, predictions: str, files: Mapping[str, str]) -> ScoredFile:
        """`ragvqa score`: a predictions JSONL scored against the files of `roles` (the
        questions are read first, so a bad question file is named before a bad prediction).
        The default loads both and calls `score`, as the runner does, so the figures are the
        run's; a benchmark with a faster route (InfoSeek's answer key) overrides it."""
        if not self.scores_answers:
            raise UserError(f"benchmark {self.name!r} scores no answers (it is retrieval only)")
        examples = self.load(files)
        result = self.score(load_predictions(predictions), examples, files)
        return ScoredFile.of(result)

    def score_table(self, metrics: Mapping[str, Any]) -> ScoreTable:
        """The table `ragvqa score` shows: by default the headline metrics, one row each."""
        rows = tuple((metric_label(key), cell(dotted(metrics, key))) for key in self.headline)
        return ScoreTable(self.title or self.name, ("metric", "value"), rows)

    # -- paired comparison (`ragvqa compare`) ----------------------------------------------------
    # The official aggregate of a benchmark is computed from the hit counts of groups of
    # questions (InfoSeek: unseen question / unseen entity; E-VQA: single-hop / two-hop;
    # wn-wiki: one group of all): a bootstrap resample needs only each group's question and hit
    # counts. `groups` names them, in the order the official scorer reports them.
    groups: ClassVar[tuple[str, ...]] = ()

    def group_of(self, question_type: str, split: str) -> str:
        """Which of `groups` a question with this type and split belongs to."""
        raise UserError(f"benchmark {self.name!r} has no official score to compare")

    def from_group_counts(self, counts: Mapping[str, tuple[int, int]]) -> dict[str, float | None]:
        """The official metrics from each group's (questions, hits), rounded as the official
        scorer does; `counts` has every name of `groups`."""
        raise UserError(f"benchmark {self.name!r} has no official score to compare")

    def aggregate(self, scores: Sequence[ExampleScore]) -> dict[str, float | None]:
        """The same metrics through the official scorer's own aggregation (a cross-check)."""
        raise UserError(f"benchmark {self.name!r} has no official score to compare")

    def example_score(
        self, data_id: str, score: int, question_type: str, split: str, method: str
    ) -> ExampleScore:
        """A run record's score as the scorer's aggregation reads it."""
        return ExampleScore(data_id, score, question_type, split, method)


@dataclass(frozen=True)
class ScoredFile:
    """What `ragvqa score` reports of a predictions file: the metrics (official structure),
    coverage, the scored predictions' ids and 0/1 scores (prediction order), and the notes for
    stderr, in order (the coverage line among them)."""

    metrics: dict[str, Any]
    coverage: dict[str, Any]
    ids: list[str]
    scores: list[int]
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, result: MetricResult, notes: Sequence[str] | None = None) -> ScoredFile:
        """From a scorer's `MetricResult`; `notes` default to the coverage line alone."""
        ids = [s.example_id for s in result.per_example]
        scores = [s.score for s in result.per_example]
        lines = tuple(notes) if notes is not None else (coverage_line(result.coverage),)
        return cls(result.metrics, result.coverage, ids, scores, lines)


@dataclass(frozen=True)
class ScoreTable:
    """A table of strings for people: its title, column names (the first left-aligned, the
    others right-aligned) and rows."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def cell(value: Any) -> str:
    """A metric in a table: "-" for None (a group without questions)."""
    return "-" if value is None else f"{value}"


def dotted(data: Any, key: str) -> Any:
    """`data["a"]["b"]` for "a.b"; None where a part is missing."""
    for part in key.split("."):
        data = data.get(part) if isinstance(data, Mapping) else None
    return data


def percent(hits: int, n: int) -> float | None:
    """round(100 * mean, 2) in the official order of operations: (hits / n) * 100."""
    return round(hits / n * 100, 2) if n else None
