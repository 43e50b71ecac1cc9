"""The ReT family of multimodal retrievers (ReT v1 and ReT-2 configurations).

torch and transformers are imported when a model is built or loaded, not when this package is
imported.
"""

from __future__ import annotations

from ragvqa.models.checkpoint import load_retriever
from ragvqa.models.config import PRESETS, HeadConfig, RetrieverConfig, preset

__all__ = ["PRESETS", "HeadConfig", "RetrieverConfig", "load_retriever", "preset"]
