"""How calls reach a `Pipeline`: one at a time, and with their arguments checked first.

A pipeline's public calls (`answer`, `answer_batch`, `retrieve_batch`, `read_batch`, `close`) take
turns on one lock (`serialised`), shared with the pipelines `with_prompt` makes from it, so one
pipeline can be used from several threads (vLLM's engine client is not thread-safe); a closed
pipeline refuses them in one line. Arguments of the wrong type (`question=None`, bytes for an
image) are one line naming the argument, before any model loads.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ragvqa.errors import UserError
from ragvqa.types import VQAQuery

CLOSED = "this pipeline is closed: load it again (Pipeline.load) to answer more"


class Turns:
    """What a pipeline and those `with_prompt` made from it share: one lock, and whether the
    engine they share was closed."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.closed = False


def serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` runs alone on its pipeline (one call at a time across threads), and is
    refused once the pipeline is closed."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:  # a Pipeline
        with self._turns.lock:
            if self._turns.closed:
                raise UserError(CLOSED)
            return method(self, *args, **kwargs)

    return run


def check_text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise UserError(f"{name} must be a string, not {type(value).__name__}")


def check_image_arg(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str | os.PathLike):
        raise UserError(
            f"{name} must be an image file's path (str or Path) or None, not {type(value).__name__}"
        )


def check_queries(queries: Any) -> None:
    """`queries` is a list of `VQAQuery` with a string question and a path (or None) image."""
    if isinstance(queries, str | bytes | VQAQuery) or not isinstance(queries, Sequence):
        raise UserError(f"queries must be a list of VQAQuery, not {type(queries).__name__}")
    for i, q in enumerate(queries):
        if not isinstance(q, VQAQuery):
            raise UserError(f"queries[{i}] must be a VQAQuery, not {type(q).__name__}")
        check_text(f"queries[{i}].question", q.question)
        check_image_arg(f"queries[{i}].image_path", q.image_path)
