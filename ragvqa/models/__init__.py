"""The ReT family of multimodal retrievers (ReT v1 and ReT-2 configurations).

torch and transformers are imported when a model is built or loaded, not when this package is
imported.
"""

from __future__ import annotations

from typing import Any

from ragvqa.models.config import PRESETS, HeadConfig, RetrieverConfig, preset

__all__ = ["PRESETS", "HeadConfig", "RetrieverConfig", "load_retriever", "preset"]


def load_retriever(path_or_hub_id: Any, **kwargs: Any) -> Any:
    """Load a retriever from ragvqa's format or an official ReT checkpoint (hub id or folder)."""
    from ragvqa.models.checkpoint import load_retriever as _load

    return _load(path_or_hub_id, **kwargs)
