"""ragvqa: retrieval-augmented visual question answering on encyclopedic knowledge.

    from ragvqa import Pipeline
    pipe = Pipeline.load("pipelines/default.yaml")
    ans = pipe.answer(image="q.jpg", question="When was this church consecrated?")

Importing the package is cheap on purpose: heavy libraries (torch, transformers, vLLM, faiss,
datasets) are imported only inside the adapters that need them, and `Pipeline` and the typed
values are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragvqa import torchvision_ops

__version__ = "0.1.0"
__all__ = ["Answer", "Pipeline", "VQAQuery"]

# the CPU install's torchvision imports only with this (see ragvqa/torchvision_ops.py); the
# hook imports nothing until torchvision is imported
torchvision_ops.install()

if TYPE_CHECKING:
    from ragvqa.pipeline import Pipeline
    from ragvqa.types import Answer, VQAQuery


def __getattr__(name: str) -> Any:
    """`from ragvqa import Pipeline` without importing the pipeline for `import ragvqa`."""
    if name == "Pipeline":
        from ragvqa.pipeline import Pipeline

        return Pipeline
    if name in ("Answer", "VQAQuery"):
        from ragvqa import types

        return getattr(types, name)
    raise AttributeError(f"module 'ragvqa' has no attribute {name!r}")
