"""Paired comparison of two benchmark runs: how much B differs from A, and whether it is noise.

The questions of the two run directories are paired by `data_id`; both runs' metrics are
recomputed on the common questions from the per-question official 0/1 scores (a failed
question scores 0; a question without a score in either run is left out of the accuracy
metrics of both), and each difference B - A gets a paired bootstrap 95% interval: the same
resampled question indices for both runs, so the difficulty of the questions cancels out and
only the variance of the difference is left (much smaller than the two variances added up).

Entity recall@K is compared for the K of `recall_ks` of either run's retrieval depth (the most
passages a question of the run retrieved), so both depths are among them; a run that did not
retrieve K passages has no recall@K (None), rather than a figure that only repeats its recall at
its own depth.

Exactness: A and B are what the scorer's own aggregation gives (the benchmark plug-in's
`aggregate`). A resample needs the same metric a thousand times, so there it is computed from
the hit counts of the benchmark's groups of questions, as many as it has, with the same rounding
(the plug-in's `groups`, `group_of` and `from_group_counts`); the two ways are checked against
each other on the full sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragvqa.errors import UserError
from ragvqa.eval.retrieval_metrics import recall_ks
from ragvqa.records import METRICS, PREDICTIONS, RunRecord, read_metrics, read_records

if TYPE_CHECKING:  # the plug-ins sit above eval/ (they import its scorers): passed in
    from ragvqa.benchmarks import Benchmark

_CHUNK = 2_000_000  # resample indices drawn at a time (bounds memory on large runs)


@dataclass(frozen=True)
class MetricDiff:
    """One metric in both runs, B - A, and the paired bootstrap 95% interval of B - A.

    Values are None where a metric has no questions (an E-VQA group, recall without gold
    entities); `excludes_zero` says the interval lies wholly above or below 0.
    """

    name: str
    a: float | None
    b: float | None
    delta: float | None
    low: float | None
    high: float | None
    excludes_zero: bool


@dataclass(frozen=True)
class Flip:
    """A question that one run answers correctly and the other does not."""

    data_id: str
    question: str
    prediction_a: str
    prediction_b: str
    gold_answers: tuple[str, ...]


@dataclass(frozen=True)
class RunInfo:
    """What a run was: its pipeline, answer template and retrieval depth (from its files;
    None where they do not say)."""

    path: str
    pipeline: str | None
    template: str | None
    depth: int


@dataclass(frozen=True)
class Comparison:
    """Everything `ragvqa compare` reports; `fixed`: wrong in A, right in B; `broken`: the
    reverse. `unscored`: common questions without a score in A or B (not in the accuracies).
    `changed`: common questions whose prediction differs (scores may tie all the same)."""

    dataset: str
    run_a: str
    run_b: str
    common: int
    only_a: int
    only_b: int
    unscored: int
    resamples: int
    seed: int
    metrics: tuple[MetricDiff, ...]
    fixed: tuple[Flip, ...]
    broken: tuple[Flip, ...]
    changed: int = 0
    info_a: RunInfo | None = None
    info_b: RunInfo | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def official_score(record: RunRecord) -> int | None:
    """The question's 0/1 score: 0 when it failed, None when it was not scored."""
    return 0 if record.status == "failed" else record.score


def _load(
    run: Path, benchmark_names: Callable[[], Sequence[str]]
) -> tuple[str, dict[str, RunRecord]]:
    """The run's one dataset, which must be a registered benchmark's, and its records by id."""
    if not run.is_dir():
        raise UserError("no such run directory", path=str(run))
    records = read_records(run)
    datasets = sorted({r.dataset for r in records})
    if len(datasets) != 1:
        found = ", ".join(datasets) or "no questions"
        raise UserError(f"expected one dataset in the run, found {found}", path=str(run))
    if datasets[0] not in benchmark_names():
        known = ", ".join(benchmark_names())
        raise UserError(f"unknown dataset {datasets[0]!r} (expected {known})", path=str(run))
    by_id: dict[str, RunRecord] = {}
    for r in records:
        if r.data_id in by_id:
            raise UserError(f"question {r.data_id!r} appears twice", path=str(run / PREDICTIONS))
        by_id[r.data_id] = r
    return datasets[0], by_id


def _info(run: Path, records: Sequence[RunRecord]) -> RunInfo:
    """The run's pipeline and template (metrics.json, else its records) and retrieval depth."""
    loaded = read_metrics(run) if (run / METRICS).is_file() else {}
    metrics = loaded if isinstance(loaded, dict) else {}
    templates = sorted({r.template for r in records if r.template})
    template = metrics.get("template") or (", ".join(templates) if templates else None)
    depth = max((len(r.retrieved) for r in records), default=0)
    return RunInfo(str(run), metrics.get("pipeline"), template, depth)


def _official(bench: Benchmark, records: Sequence[RunRecord]) -> dict[str, float | None]:
    """Accuracy metrics of scored records through the scorer's own aggregation."""
    scores = [
        bench.example_score(r.data_id, s, r.question_type, r.split, r.score_method)
        for r in records
        if (s := official_score(r)) is not None
    ]
    return bench.aggregate(scores)


def _columns(
    bench: Benchmark, records: Sequence[RunRecord], scored: np.ndarray, ks: Sequence[int]
) -> np.ndarray:
    """0/1 columns whose sums give every metric: (n, hits) of each of the benchmark's groups in
    turn, then gold n and the recall hits of each K."""
    right = scored & np.array([official_score(r) == 1 for r in records], dtype=bool)
    names = [bench.group_of(r.question_type, r.split) for r in records]
    unknown = sorted(set(names) - set(bench.groups))
    if unknown:
        raise UserError(f"benchmark {bench.name!r}: question groups {unknown} not in its groups")
    gold = np.array([bool(r.gold_entities) for r in records], dtype=bool)
    ranks = [-1 if r.gold_rank is None else r.gold_rank for r in records]
    cols = []
    for group in bench.groups:
        member = np.array([name == group for name in names], dtype=bool)
        cols += [scored & member, right & member]
    cols.append(gold)
    cols += [gold & np.array([0 <= rank < k for rank in ranks], dtype=bool) for k in ks]
    return np.stack(cols, axis=1).astype(np.float64)


def _from_counts(
    bench: Benchmark, c: Sequence[int], ks: Sequence[int], depth: int
) -> dict[str, float | None]:
    """The metrics from the column sums of `_columns`, rounded as the official scorers do;
    recall@K is None for K beyond the run's retrieval `depth`."""
    width = 2 * len(bench.groups)
    counts = {g: (c[2 * i], c[2 * i + 1]) for i, g in enumerate(bench.groups)}
    out = bench.from_group_counts(counts)
    gold = c[width]
    for k, hits in zip(ks, c[width + 1 :], strict=True):
        out[f"entity_recall@{k}"] = 100.0 * hits / gold if gold and k <= depth else None
    return out


def _resampled_sums(columns: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Column sums over `resamples` draws of the rows with replacement: [resamples, n_cols]."""
    n = columns.shape[0]
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK // n)
    sums = []
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        idx = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
        weights = np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n)
        sums.append(weights.astype(np.float64) @ columns)
    return np.rint(np.concatenate(sums)).astype(np.int64)


def _bootstrap_deltas(
    bench: Benchmark,
    cols_a: np.ndarray,
    cols_b: np.ndarray,
    resamples: int,
    seed: int,
    ks: Sequence[int],
    depths: tuple[int, int],
) -> dict[str, list[float]]:
    """B - A of every metric on each resample (the same question indices for A and B);
    a resample where a metric has no questions in A or B gives no value for it."""
    sums = _resampled_sums(np.concatenate([cols_a, cols_b], axis=1), resamples, seed)
    width = cols_a.shape[1]
    deltas: dict[str, list[float]] = {}
    for row in sums.tolist():
        ra = _from_counts(bench, row[:width], ks, depths[0])
        rb = _from_counts(bench, row[width:], ks, depths[1])
        for name, va in ra.items():
            vb = rb[name]
            values = deltas.setdefault(name, [])
            if va is not None and vb is not None:
                values.append(vb - va)
    return deltas


def _interval(deltas: list[float]) -> tuple[float | None, float | None]:
    if not deltas:
        return None, None
    low, high = np.percentile(np.array(deltas), [2.5, 97.5])
    return round(float(low), 6), round(float(high), 6)


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    resamples: int = 1000,
    seed: int = 0,
    *,
    get_benchmark: Callable[[str], Benchmark],
    benchmark_names: Callable[[], Sequence[str]],
) -> Comparison:
    """Compare run B with run A on their common questions (see the module docstring).

    `get_benchmark` and `benchmark_names` find the runs' benchmark plug-in and the registered
    names: the caller passes `ragvqa.benchmarks`' own (the CLI does), because the plug-ins
    import eval/'s scorers and eval/ must not import them back.
    """
    if resamples < 1:
        raise UserError(f"--resamples must be at least 1 (got {resamples})")
    run_a, run_b = Path(run_a), Path(run_b)
    dataset, by_a = _load(run_a, benchmark_names)
    dataset_b, by_b = _load(run_b, benchmark_names)
    if dataset_b != dataset:
        raise UserError(f"run B is {dataset_b} but run A ({run_a}) is {dataset}", path=str(run_b))
    ids = [i for i in by_a if i in by_b]
    if not ids:
        raise UserError(f"no question in common with run A ({run_a})", path=str(run_b))
    recs_a, recs_b = [by_a[i] for i in ids], [by_b[i] for i in ids]
    scored = np.array(
        [
            official_score(a) is not None and official_score(b) is not None
            for a, b in zip(recs_a, recs_b, strict=True)
        ],
        dtype=bool,
    )
    bench = get_benchmark(dataset)
    info_a, info_b = _info(run_a, list(by_a.values())), _info(run_b, list(by_b.values()))
    depths = (info_a.depth, info_b.depth)
    ks = tuple(sorted(set(recall_ks(depths[0])) | set(recall_ks(depths[1]))))
    cols_a, cols_b = (_columns(bench, recs, scored, ks) for recs in (recs_a, recs_b))
    point_a = _from_counts(bench, [int(x) for x in cols_a.sum(axis=0)], ks, depths[0])
    point_b = _from_counts(bench, [int(x) for x in cols_b.sum(axis=0)], ks, depths[1])
    for recs, point in ((recs_a, point_a), (recs_b, point_b)):
        kept = [r for r, ok in zip(recs, scored, strict=True) if ok]
        official = _official(bench, kept)
        assert official == {k: point[k] for k in official}, "bootstrap metric != official"
    deltas = _bootstrap_deltas(bench, cols_a, cols_b, resamples, seed, ks, depths)
    return Comparison(
        dataset=dataset,
        run_a=str(run_a),
        run_b=str(run_b),
        common=len(ids),
        only_a=len(by_a) - len(ids),
        only_b=len(by_b) - len(ids),
        unscored=int((~scored).sum()),
        resamples=resamples,
        seed=seed,
        metrics=tuple(_diff(name, point_a, point_b, deltas[name]) for name in point_a),
        fixed=_flips(recs_a, recs_b, scored, 0),
        broken=_flips(recs_a, recs_b, scored, 1),
        changed=sum(_answer(a) != _answer(b) for a, b in zip(recs_a, recs_b, strict=True)),
        info_a=info_a,
        info_b=info_b,
    )


def _answer(record: RunRecord) -> str | None:
    """What a question's answer was, for counting changes (None: it failed)."""
    return None if record.status == "failed" else record.prediction


def _diff(
    name: str, a: Mapping[str, float | None], b: Mapping[str, float | None], deltas: list[float]
) -> MetricDiff:
    va, vb = a[name], b[name]
    delta = None if va is None or vb is None else round(vb - va, 6)  # 1.81, not 1.8099999…
    low, high = _interval(deltas)
    excludes = low is not None and high is not None and (low > 0 or high < 0)
    return MetricDiff(name, va, vb, delta, low, high, excludes)


def _flips(
    recs_a: Sequence[RunRecord], recs_b: Sequence[RunRecord], scored: np.ndarray, a_score: int
) -> tuple[Flip, ...]:
    """Scored questions whose score is `a_score` in A and the other one in B."""
    return tuple(
        Flip(a.data_id, a.question, a.prediction, b.prediction, tuple(a.gold_answers))
        for a, b, ok in zip(recs_a, recs_b, scored, strict=True)
        if ok and official_score(a) == a_score and official_score(b) == 1 - a_score
    )
