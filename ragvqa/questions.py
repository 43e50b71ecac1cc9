"""What a user asks, checked before any model loads: the question's text and its image.

Shared by the front ends that take a question from a person (`ragvqa answer`, `ragvqa demo`,
the server), so each refuses bad input in the same words. It sits below them all: the server
imports it from here, not from the CLI.
"""

from __future__ import annotations

from pathlib import Path

from ragvqa.errors import UserError


def validate_question(question: str) -> str:
    """The question without surrounding blanks; refused when it is empty or not UTF-8 text
    (a lone surrogate from a badly decoded command line)."""
    try:
        question.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError("the question is not valid UTF-8 text") from None
    if not question.strip():
        raise UserError("the question is empty")
    return question.strip()


def validate_image(path: Path) -> str:
    """The image path when the file is a whole, decodable image of sane size (checked before
    any model loads)."""
    from PIL import Image

    from ragvqa.images import check_image

    problem = check_image(str(path))
    if problem is not None:
        raise UserError(problem.split(": ")[0], path=str(path))
    try:
        with Image.open(path) as img:
            img.load()
    except Exception:
        raise UserError("image is truncated or corrupt", path=str(path)) from None
    return str(path)
