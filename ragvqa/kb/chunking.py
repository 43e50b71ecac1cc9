"""Pages to passages.

- `section` (default): one passage per non-empty section, displayed as
  "<page title> / <section title>", with that section's images.
- `tokens`: sentence-packed windows of at most `max_tokens` words over each section's text, for
  knowledge bases whose pages are one flat text (Wiki6M). A sentence longer than the window is
  cut at word boundaries.
Passage ids are "<page id>#<n>" (n counts the page's passages from 0), stable across rebuilds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from ragvqa.errors import UserError
from ragvqa.kb.readers import KBPage
from ragvqa.schema.sections import CHUNKINGS  # the `kb.source.chunking` values
from ragvqa.types import Passage

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def windows(text: str, max_tokens: int) -> list[str]:
    """Greedy packing of whole sentences into windows of at most `max_tokens` words."""
    out: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        words = sentence.split()
        while len(words) > max_tokens:  # a sentence longer than a window
            if current:
                out.append(" ".join(current))
                current = []
            out.append(" ".join(words[:max_tokens]))
            words = words[max_tokens:]
        if current and len(current) + len(words) > max_tokens:
            out.append(" ".join(current))
            current = []
        current.extend(words)
    if current:
        out.append(" ".join(current))
    return out


def chunk_page(
    page: KBPage,
    chunking: str,
    max_tokens: int,
    resolve: Callable[[tuple[str, ...]], tuple[str, ...]],
) -> Iterator[Passage]:
    """The passages of one page; `resolve` maps image URLs to local files (missing dropped)."""
    if chunking not in CHUNKINGS:
        raise UserError(f"unknown chunking {chunking!r} (section or tokens)")
    n = 0
    for section in page.sections:
        if not section.text.strip():
            continue
        images = resolve(section.image_urls or (page.image_urls if len(page.sections) == 1 else ()))
        pieces = [section.text] if chunking == "section" else windows(section.text, max_tokens)
        for piece in pieces:
            yield Passage(
                passage_id=f"{page.page_id}#{n}",
                text=piece,
                title=page.title,
                section_title=section.title if section.title != page.title else "",
                page_id=page.page_id,
                entity_id=page.entity_id,
                image_paths=images,
            )
            n += 1


def display_title(passage: Passage) -> str:
    """ "<page title> / <section title>" (just the page title for a page's lead section)."""
    if passage.section_title:
        return f"{passage.title} / {passage.section_title}"
    return passage.title
