"""The run directory's format: its file names, the `RunRecord` of one question, and the
readers of a finished run's records and metrics.

`ragvqa bench` writes a run directory (`ragvqa.run`) and `compare` / `report` read it
(`ragvqa.eval`); the format sits at the package root, below both, so that the evaluation never
imports the runner (`ragvqa.run.records` re-exports all of it).

Layout of RUN/:
- `config.yaml`: the resolved pipeline and benchmark settings (after `base:` and `--set`), and
  `inputs`: every file and folder the run read (benchmark files and image folders, the pipeline
  file, models, KB, index), as absolute paths; no command may write over or into them.
- `environment.json`: ragvqa, Python, torch, transformers, vLLM, faiss versions; CPU / GPU.
- `predictions.jsonl`: one `RunRecord` per question, in question order (written once, at the end,
  atomically; while a run is going on, finished generation chunks live in `work/`).
- `run.trec`: the retrieved passages in TREC format (`qid Q0 passage_id rank score ragvqa`).
- `metrics.json`: `{"benchmark", "pipeline", "official": <the scorer's metrics>, "retrieval":
  {"entity_recall": {...}, "pseudo_recall": {...}}, "counts": {...}, "timings": {...},
  "baselines": {...}}`. `timings` holds per stage `{"seconds", "cached"}`: the seconds the stage
  took when it was computed. A stage that came from the stage cache or the journal in a re-run
  of the same run keeps the seconds the run recorded when it computed it (`keep_measured`), so
  re-running a finished run marks its stages cached and keeps their times; 0 when the run never
  computed it (its output came from another run's cache). `total` (and `startup`) are the last
  run's, kept too when it computed nothing; `predictions.jsonl` keeps each question's share of
  a cached batched stage the same way (`EarlierTimings`; both in `ragvqa.run.records`).
- `.ragvqa.lock`: while a run writes the directory, who runs it (see `ragvqa.run.lock`).
- `work/`: the generation journals of the reader's finished batches, each line under the key of
  everything that produced it (see `ragvqa.run.journal`).

A `RunRecord` line holds everything a reader of one answer needs: the question, the scored
answer and the raw output, the template id@version and hash, the passages retrieved (ids,
titles, scores, a text snippet) and which of them the reader saw, the gold answers and
entities, the official 0/1 score, the rank of the first gold-entity passage, and per-stage
seconds. `status` is "ok" or "failed" (with `error`): a failed question scores 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import iter_jsonl, read_json
from ragvqa.types import Answer, BenchmarkExample, ExampleScore

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
TREC = "run.trec"
WORK = "work"  # journals of a run in progress
SNIPPET = 300  # characters of passage text kept per retrieved passage


@dataclass
class RunRecord:
    """One answered (or failed) benchmark question, as written to predictions.jsonl."""

    data_id: str
    dataset: str
    question: str
    prediction: str = ""
    raw_output: str | None = None
    status: str = "ok"
    error: str | None = None
    image: str | None = None
    image_id: str | None = None
    question_type: str = ""
    split: str = ""
    gold_answers: list[str] = field(default_factory=list)
    gold_entities: list[str] = field(default_factory=list)
    gold_entity_names: list[str] = field(default_factory=list)
    score: int | None = None
    score_method: str = ""
    gold_rank: int | None = None
    template: str = ""
    template_hash: str = ""
    model: str = ""
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    prompt: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, example: BenchmarkExample, answer: Answer, score: ExampleScore | None) -> RunRecord:
        """The record of one benchmark question: its gold data, the pipeline's answer (passages
        in their one JSON shape, texts cut to snippets) and the official score."""
        retrieved = [rp.to_json(SNIPPET) for rp in answer.passages]
        gold = {g for g in example.entity_ids if g}
        gold_rank = next(
            (
                r["rank"]
                for r in retrieved
                if gold & {r["entity_id"], r["page_id"], r["passage_id"]}
            ),
            None,
        )
        failed = answer.error is not None
        return cls(
            data_id=example.example_id,
            dataset=example.dataset,
            question=example.question,
            prediction="" if failed else answer.text,
            raw_output=None if failed else answer.raw_output,
            status="failed" if failed else "ok",
            error=answer.error,
            image=example.image_path,
            image_id=example.image_id,
            question_type=example.question_type,
            split=example.split,
            gold_answers=list(example.answers)
            + [a for a in example.answer_eval if a not in example.answers],
            gold_entities=list(example.entity_ids),
            gold_entity_names=list(example.entity_names),
            score=score.score if score is not None else None,
            score_method=score.method if score is not None else "",
            gold_rank=gold_rank,
            template=answer.template,
            template_hash=answer.template_hash,
            model=answer.model,
            retrieved=retrieved,
            evidence=[rp.passage_id for rp in answer.evidence],
            prompt=answer.prompt.to_json() if answer.prompt else [],
            timings={k: round(v, 6) for k, v in answer.timings.items()},
        )

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = "") -> RunRecord:
        known = {f.name for f in fields(cls)}
        if "data_id" not in obj:
            raise UserError("a prediction record without 'data_id'", path=source or None)
        return cls(**{k: v for k, v in obj.items() if k in known})


def read_records(run: str | Path) -> list[RunRecord]:
    """The records of a finished run, in question order."""
    path = Path(run) / PREDICTIONS
    if not path.is_file():
        raise UserError(f"not a finished run (no {PREDICTIONS})", path=str(run))
    return [RunRecord.from_json(obj, f"{path}:{line}") for line, obj in iter_jsonl(path)]


def read_metrics(run: str | Path) -> dict[str, Any]:
    """The metrics.json of a finished run; a file that is not JSON is one `UserError` naming
    it and the line ("malformed JSON (<error>, column C)")."""
    path = Path(run) / METRICS
    if not path.is_file():
        raise UserError(f"not a finished run (no {METRICS})", path=str(run))
    return read_json(path, invalid="malformed JSON")
