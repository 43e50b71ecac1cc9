"""The generation journal: answers of finished reader batches, appended as they finish.

`Pipeline.read_batch` reads questions in fixed batches; after each batch it appends the answers
here (one JSON line each, fsynced) under the batch's key: everything that produced them
(`ragvqa.cached_stages.read_keys`: the reader's spec and weights fingerprint, the template and
its hash, the settings and sampling, and for each question its passages and the prompt rendered
from them, message texts and image content hashes). A run killed at any moment and started
again finds the finished batches and generates only the rest, with the same batches, so its
answers equal those of an uninterrupted run. A batch whose key changed (an edited question, a
replaced image, other weights) is generated again, and its old lines are skipped; a journal of
which nothing is used any more is set aside (`<file>.<time>.stale`), never mixed in. A torn
last line (a kill or a full disk in the middle of an append) is skipped when reading and cut off
before the next append, so the next record starts on its own line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import WRITE_ERRORS
from ragvqa.types import Answer, ChatMessage, ChatPrompt, ImagePart, TextPart

BLOCK = 1 << 16  # bytes read at a time when looking back for the last line


class Journal:
    """Answers journaled in one JSONL file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self, key: str | Mapping[str, str], retrieved: Sequence[Answer]) -> dict[str, Answer]:
        """The journaled answers written under their key, completed from `retrieved` (the same
        questions with their passages); a torn last line (a kill mid-write) is ignored.

        `key` is one key for the whole journal (a line under any other sets the journal
        aside), or each question's key by its id (`data_id` -> the key of its batch): lines
        under another key are skipped, and the journal is set aside only when none is used."""
        done: dict[str, Answer] = {}
        if not self.path.is_file():
            return done
        keys = key if isinstance(key, Mapping) else None
        by_id = {a.query_id: a for a in retrieved}
        skipped = False
        with self.path.open("r", encoding="utf-8") as fh:
            for line in fh:
                obj = _entry(line)
                if obj is None:
                    continue  # the line a kill cut short
                record = obj["record"]
                wanted = key if keys is None else keys.get(record["data_id"])
                if obj["key"] != wanted:
                    if keys is None:
                        return self._set_aside()
                    skipped = True  # written for another question, prompt or reader
                    continue
                if record["data_id"] in by_id:
                    done[record["data_id"]] = _answer(by_id[record["data_id"]], record)
        return self._set_aside() if skipped and not done else done

    def _set_aside(self) -> dict[str, Answer]:
        """Move the journal out of the way (`<file>.<time>.stale`): nothing in it is used."""
        self.path.replace(self.path.with_suffix(f".{int(time.time())}.stale"))
        return {}

    def append(self, key: str, answers: Sequence[Answer]) -> None:
        """Add a finished batch (one write, flushed and fsynced) after a complete last line.

        Raises:
            UserError: the disk is full (or read-only): the batch is not journaled.
        """
        text = "".join(
            json.dumps({"key": key, "record": _record(a)}, ensure_ascii=False) + "\n"
            for a in answers
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._mend_tail()
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if exc.errno not in WRITE_ERRORS:
                raise
            raise UserError(f"cannot write ({exc.strerror})", path=str(self.path)) from None

    def _mend_tail(self) -> None:
        """End the file with a newline: a complete last record without one gets it, a torn one
        (not a whole JSON record) is cut off."""
        try:
            fh = self.path.open("rb+")
        except FileNotFoundError:
            return
        with fh:
            end = fh.seek(0, os.SEEK_END)
            if end == 0:
                return
            fh.seek(end - 1)
            if fh.read(1) == b"\n":
                return
            start = _last_line_start(fh, end)
            fh.seek(start)
            tail = fh.read()
            if _entry(tail.decode("utf-8", errors="replace")) is not None:
                fh.write(b"\n")
            else:
                fh.truncate(start)
            fh.flush()
            os.fsync(fh.fileno())


def _last_line_start(fh: Any, end: int) -> int:
    """The offset just after the last newline before `end` (0 when there is none)."""
    pos = end
    while pos > 0:
        step = min(BLOCK, pos)
        fh.seek(pos - step)
        block = fh.read(step)
        found = block.rfind(b"\n")
        if found >= 0:
            return pos - step + found + 1
        pos -= step
    return 0


def _entry(line: str) -> dict[str, Any] | None:
    """A journal line as {"key", "record"}, or None for a torn or foreign line."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("record"), dict):
        return None
    return obj if "key" in obj and "data_id" in obj["record"] else None


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
