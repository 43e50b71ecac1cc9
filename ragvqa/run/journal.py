"""The generation journal: answers of finished reader batches, appended as they finish.

`Pipeline.read_batch` reads questions in fixed batches; after each batch it appends the answers
here (one JSON line each, fsynced), under the key of everything generation depends on (reader,
template and its hash, settings, the passages of every question). A run killed at any moment and
started again finds the finished batches and generates only the rest, with the same batches, so
its answers equal those of an uninterrupted run. A journal written under another key is set
aside (`<file>.<time>.stale`), never mixed in.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragvqa.types import Answer, ChatMessage, ChatPrompt, ImagePart, TextPart


class Journal:
    """Answers journaled in one JSONL file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self, key: str, retrieved: Sequence[Answer]) -> dict[str, Answer]:
        """The journaled answers written under `key`, completed from `retrieved` (the same
        questions with their passages); a torn last line (a kill mid-write) is ignored."""
        done: dict[str, Answer] = {}
        if not self.path.is_file():
            return done
        by_id = {a.query_id: a for a in retrieved}
        with self.path.open("r", encoding="utf-8") as fh:
            for line in fh:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line a kill cut short
                if obj.get("key") != key:
                    self.path.replace(self.path.with_suffix(f".{int(time.time())}.stale"))
                    return {}
                record = obj["record"]
                if record["data_id"] in by_id:
                    done[record["data_id"]] = _answer(by_id[record["data_id"]], record)
        return done

    def append(self, key: str, answers: Sequence[Answer]) -> None:
        """Add a finished batch (one write, flushed and fsynced)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(
            json.dumps({"key": key, "record": _record(a)}, ensure_ascii=False) + "\n"
            for a in answers
        )
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def _record(a: Answer) -> dict[str, Any]:
    prompt = a.prompt
    return {
        "data_id": a.query_id,
        "text": a.text,
        "raw_output": a.raw_output,
        "model": a.model,
        "template": a.template,
        "template_hash": a.template_hash,
        "evidence": [rp.passage_id for rp in a.evidence],
        "seconds": a.timings.get("generate", 0.0),
        "truncated_passages": prompt.truncated_passages if prompt else 0,
        "messages": None
        if prompt is None
        else [[m.role, [_part(p) for p in m.parts]] for m in prompt.messages],
    }


def _part(part: TextPart | ImagePart) -> list[str]:
    return ["image", part.image] if isinstance(part, ImagePart) else ["text", part.text]


def _answer(retrieved: Answer, record: dict[str, Any]) -> Answer:
    prompt = None
    if record["messages"] is not None:
        messages = tuple(
            ChatMessage(
                role, tuple(ImagePart(v) if k == "image" else TextPart(v) for k, v in parts)
            )
            for role, parts in record["messages"]
        )
        prompt = ChatPrompt(
            messages, record["template"], record["template_hash"], record["truncated_passages"]
        )
    return replace(
        retrieved,
        text=record["text"],
        raw_output=record["raw_output"],
        model=record["model"],
        evidence=retrieved.passages[: len(record["evidence"])],
        prompt=prompt,
        template=record["template"],
        template_hash=record["template_hash"],
        timings={**retrieved.timings, "generate": record["seconds"]},
    )
