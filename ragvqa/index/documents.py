"""The text the document encoder reads for a passage: the index's document template filled in.

Shared by the in-process and the Ray encoding paths of `ragvqa index build` and by rerankers
that encode passages the way the index did.
"""

from __future__ import annotations

from ragvqa.errors import UserError
from ragvqa.kb.chunking import display_title
from ragvqa.types import Passage

# ReT's; text encoders read "{display_title}. {text}" (ragvqa.models.encoders.DOC_TEMPLATES,
# the default an index build picks by encoder kind)
DEFAULT_TEMPLATE = "{display_title}\n{text}"


def document_text(passage: Passage, template: str) -> str:
    """The text the document encoder reads for a passage."""
    try:
        return template.format(
            display_title=display_title(passage),
            title=passage.title,
            section=passage.section_title,
            text=passage.text,
        )
    except (KeyError, IndexError) as exc:
        raise UserError(
            f"unknown field {exc} in --doc-template (use display_title, title, section, text)"
        ) from None
