"""`ragvqa report`: one self-contained static HTML page for a benchmark run directory.

The page holds a header (benchmark, pipeline, model, template, the official metrics by their
human names, entity and pseudo recall@K, the start-up and stage timings), a recall@K plot
(matplotlib, Agg, embedded as a PNG data URI) and one card per question: the image (a
downscaled JPEG data URI), question, gold answers, prediction, a correct / wrong / failed
badge and the retrieved passages, with the gold entity's passages and the ones the reader saw
marked. Ranks are 1-based, as the prompt numbers its passages ([1], [2], ...): the first
retrieved passage is number 1.

Nothing is loaded from outside the file: images, plot, CSS and the filter script are inline, and a
Content-Security-Policy allows only the page's own script (by hash), so the file still works when
moved and text from the run (always HTML-escaped) can never run as code. Filters by split,
question type and outcome are plain JavaScript; they also read the URL fragment on load
(`report.html#correct=wrong&split=val`) and write it back when changed. The stylesheet, the
script and the policy are in `ragvqa.eval.report_page`.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Iterator
from html import escape
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.eval.names import metric_label
from ragvqa.eval.recall_plot import recall_curve, recall_plot_png
from ragvqa.eval.report_page import CSS, SCRIPT, content_security_policy
from ragvqa.images import open_image
from ragvqa.io import atomic_writer
from ragvqa.records import RunRecord, read_metrics, read_records

REPORT = "report.html"
THUMBNAIL_PX = 256
SNIPPET_CHARS = 400
OUTCOMES = ("correct", "wrong", "failed", "unscored")


def write_report(
    run: str | Path,
    out: str | Path | None = None,
    *,
    limit: int | None = None,
    only: str | None = None,
    records: list[RunRecord] | None = None,
) -> Path:
    """Write the HTML report of a finished run to `out` (default RUN/report.html); return it.

    `only` keeps the questions of one outcome (e.g. "wrong", for error analysis), then `limit`
    keeps the first N of them (a report of a 70k-question run is large: every card carries its
    image). `records`: the run's records when the caller has read them already. Bad input
    raises `UserError`.
    """
    run = Path(run)
    metrics = read_metrics(run)
    records, total = select_records(
        read_records(run) if records is None else records, only=only, limit=limit
    )
    target = Path(out) if out is not None else run / REPORT
    with atomic_writer(target) as fh:
        for chunk in render_report(records, metrics, run_dir=run, total=total):
            fh.write(chunk)
    return target


def select_records(
    records: list[RunRecord], *, only: str | None = None, limit: int | None = None
) -> tuple[list[RunRecord], int]:
    """The records a report shows (those of outcome `only`, then the first `limit`) and how
    many had that outcome."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    if only is not None and only not in OUTCOMES:
        raise UserError(f"--only must be one of {', '.join(OUTCOMES)}, got {only!r}")
    if only is not None:
        records = [r for r in records if _outcome(r) == only]
    return (records if limit is None else records[:limit]), len(records)


def render_report(
    records: list[RunRecord],
    metrics: dict[str, Any],
    *,
    run_dir: Path | None = None,
    total: int | None = None,
) -> Iterator[str]:
    """The page, in chunks (cards are produced one at a time, so memory stays flat)."""
    benchmark = str(metrics.get("benchmark") or "run")
    yield "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
    yield f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy()}">\n'
    yield "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
    yield f"<title>ragvqa report: {escape(benchmark)}</title>\n<style>{CSS}</style>\n</head>\n"
    yield "<body>\n"
    yield _header(records, metrics, total)
    yield _filters(records)
    for record in records:
        yield _card(record, run_dir)
    yield f"<script>{SCRIPT}</script>\n</body>\n</html>\n"


# --- header ---------------------------------------------------------------------------------


def _header(records: list[RunRecord], metrics: dict[str, Any], total: int | None) -> str:
    info = {
        "benchmark": metrics.get("benchmark"),
        "pipeline": metrics.get("pipeline"),
        "model": _distinct(r.model for r in records),
        "template": _distinct(r.template for r in records),
    }
    outcomes = [_outcome(r) for r in records]
    shown = len(records)
    info["questions"] = (
        f"{shown}" if total is None or total == shown else f"first {shown} of {total}"
    )
    info["outcomes"] = ", ".join(f"{outcomes.count(o)} {o}" for o in OUTCOMES if o in outcomes)
    parts = [f"<h1>ragvqa report: {escape(str(metrics.get('benchmark') or 'run'))}</h1>"]
    parts.append("<div class='top'><div>")
    parts.append(_kv_table(info))
    official = _flatten(metrics.get("official") or {})
    if official:
        parts.append("<h2>Official metrics</h2>")
        parts.append(_kv_table({metric_label(k): v for k, v in official.items()}))
    recall = _recall_rows(metrics.get("retrieval") or {})
    if recall:
        parts.append("<h2>Retrieval</h2>")
        parts.append(_kv_table(recall))
    timings = _timing_rows(metrics.get("timings") or {})
    if timings:
        parts.append("<h2>Time</h2>")
        parts.append(_kv_table(timings))
    parts.append("</div>")
    plot = recall_plot_png(metrics.get("retrieval") or {})
    if plot is not None:
        parts.append(
            f"<div><img alt='recall at K' src='data:image/png;base64,{plot}' width='480'></div>"
        )
    parts.append("</div>\n")
    return "".join(parts)


def _recall_rows(retrieval: dict[str, Any]) -> dict[str, str]:
    """Rows "Entity recall@5": "36.7", ..., for the K the run reported (up to its depth)."""
    rows = {}
    for kind in ("entity_recall", "pseudo_recall"):
        ks, values = recall_curve(retrieval.get(kind))
        for k, value in zip(ks, values, strict=True):
            rows[f"{metric_label(kind)}@{k}"] = f"{value:.1f}"
    return rows


def _timing_rows(timings: dict[str, Any]) -> dict[str, str]:
    """Rows "start-up": "45.90 s (reader 45.20 s, encoder 0.70 s)" (loading the components,
    kept out of the stages), then "encode": "0.82 s", ... ("(cached)" when it came from the
    stage cache), then "total"."""
    rows = {}
    startup = timings.get("startup")
    if isinstance(startup, dict) and isinstance(startup.get("seconds"), int | float):
        components = startup.get("components") or {}
        parts = ", ".join(
            f"{name} {seconds:.2f} s"
            for name, seconds in components.items()
            if isinstance(seconds, int | float)
        )
        note = " (cached)" if startup.get("cached") else ""
        rows["start-up"] = f"{startup['seconds']:.2f} s" + (f" ({parts})" if parts else "") + note
    for stage, entry in timings.items():
        if stage == "startup":
            continue
        seconds = entry.get("seconds") if isinstance(entry, dict) else entry
        if isinstance(seconds, int | float):
            cached = isinstance(entry, dict) and entry.get("cached")
            rows[str(stage)] = f"{seconds:.2f} s" + (" (cached)" if cached else "")
    return rows


def _distinct(values: Iterable[str]) -> str:
    seen = list(dict.fromkeys(v for v in values if v))
    return ", ".join(seen)


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested metric dicts as `a.b` keys, lists as JSON, in the scorer's order."""
    if not isinstance(obj, dict):
        return {prefix or "value": obj}
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _kv_table(data: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{escape(str(k))}</td><td>{escape(_fmt(v))}</td></tr>" for k, v in data.items()
    )
    return f"<table class='kv'>{rows}</table>"


# --- recall plot ----------------------------------------------------------------------------

# --- cards ----------------------------------------------------------------------------------


def _outcome(record: RunRecord) -> str:
    if record.status != "ok":
        return "failed"
    if record.score is None:
        return "unscored"
    return "correct" if record.score else "wrong"


def _filters(records: list[RunRecord]) -> str:
    def select(key: str, label: str, values: Iterable[str]) -> str:
        options = "".join(
            f"<option value='{escape(v)}'>{escape(v)}</option>" for v in dict.fromkeys(values)
        )
        return (
            f"<label>{label} <select id='f-{key}'><option value='all'>all</option>"
            f"{options}</select></label>"
        )

    outcomes = [o for o in OUTCOMES if o != "unscored" or any(_outcome(r) == o for r in records)]
    n = len(records)
    return (
        "<div class='filters'>"
        + select("split", "split", sorted({_label(r.split) for r in records}))
        + select("type", "question type", sorted({_label(r.question_type) for r in records}))
        + select("correct", "correctness", outcomes)
        + f"<span id='counter'>{n} of {n} questions shown</span></div>\n"
    )


def _label(value: str) -> str:
    return value or "(none)"


def _card(record: RunRecord, run_dir: Path | None) -> str:
    outcome = _outcome(record)
    gold_answers = ", ".join(record.gold_answers) or "-"
    gold_entities = ", ".join(record.gold_entity_names or record.gold_entities) or "-"
    rank = "-" if record.gold_rank is None else str(record.gold_rank + 1)  # 1-based, as [1]
    lines = [
        f"<div class='card {outcome}' data-id='{escape(record.data_id)}' "
        f"data-split='{escape(_label(record.split))}' "
        f"data-qtype='{escape(_label(record.question_type))}' data-outcome='{outcome}'>",
        f"<div class='img'>{_image_html(record.image, run_dir)}</div>",
        "<div class='body'>",
        f"<div class='meta'>{escape(record.data_id)} · {escape(_label(record.split))} · "
        f"{escape(_label(record.question_type))}</div>",
        f"<div class='q'>{escape(record.question)}</div>",
        f"<div><b>gold:</b> {escape(gold_answers)}</div>",
        f"<div><b>prediction:</b> {escape(record.prediction) or '-'} "
        f"<span class='badge {outcome}'>{outcome}</span></div>",
    ]
    if record.error:
        lines.append(f"<div class='error'>{escape(record.error)}</div>")
    if record.raw_output is not None and record.raw_output.strip() != record.prediction.strip():
        lines.append(
            f"<details><summary>raw output</summary><pre>{escape(record.raw_output)}</pre>"
            "</details>"
        )
    lines.append(
        f"<div class='meta'>gold entity: {escape(gold_entities)} · first gold passage at rank "
        f"{rank}</div>"
    )
    lines.append(_passages_html(record))
    lines.append("</div></div>\n")
    return "\n".join(lines)


def is_gold_passage(passage: dict[str, Any], gold_entities: Iterable[str]) -> bool:
    """A retrieved passage is gold when its entity, page or passage id names a gold entity."""
    gold = {str(g) for g in gold_entities}
    ids = (passage.get("entity_id"), passage.get("page_id"), passage.get("passage_id"))
    return any(i is not None and str(i) in gold for i in ids)


def _passages_html(record: RunRecord) -> str:
    if not record.retrieved:
        return "<div class='meta'>no passages retrieved</div>"
    seen = {str(e) for e in record.evidence}
    items = []
    for passage in record.retrieved:
        gold = is_gold_passage(passage, record.gold_entities)
        read = str(passage.get("passage_id")) in seen
        classes = " ".join(c for c, on in (("gold", gold), ("seen", read)) if on)
        tags = ("<span class='tag gold'>gold</span>" if gold else "") + (
            "<span class='tag seen'>seen by reader</span>" if read else ""
        )
        title = escape(str(passage.get("title") or passage.get("passage_id") or "?"))
        section = passage.get("section")
        heading = title + (f" § {escape(str(section))}" if section else "")
        snippet = str(passage.get("text") or "")
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[:SNIPPET_CHARS] + "…"
        score = passage.get("score")
        items.append(
            f"<li class='{classes}' data-passage='{escape(str(passage.get('passage_id')))}'"
            f" value='{_int_or(passage.get('rank'), len(items)) + 1}'>"  # [1] is rank 0
            f"<b>{heading}</b>{tags} <span class='meta'>"
            f"{escape(str(passage.get('passage_id')))} · score {escape(_fmt(score))}</span>"
            f"<div class='snippet'>{escape(snippet)}</div></li>"
        )
    return "<ol class='passages'>" + "".join(items) + "</ol>"


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# --- images ---------------------------------------------------------------------------------


def _image_html(image: str | None, run_dir: Path | None) -> str:
    if not image:
        return "<div class='noimg'>no image</div>"
    uri, problem = image_data_uri(image, run_dir)
    if uri is None:
        return f"<div class='noimg' title='{escape(image)}'>{escape(problem)}</div>"
    return f"<img alt='question image' src='{uri}'>"


def image_data_uri(image: str, run_dir: Path | None = None) -> tuple[str | None, str]:
    """A JPEG data URI of the image, at most THUMBNAIL_PX on a side, or (None, why not).

    A relative path is tried as given, then under the run directory. Never raises: a report
    must not fail on one bad image.
    """
    path = Path(image)
    candidates = [path] if path.is_absolute() or run_dir is None else [path, run_dir / path]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        return None, "image not found"
    try:
        rgb = open_image(found, draft=THUMBNAIL_PX)  # upright (EXIF), size checked
        rgb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=80)
    except Exception:  # any decoder error: PIL raises OSError, ValueError, SyntaxError, ...
        return None, "image unreadable"
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), ""
