"""The ReT family of multimodal retrievers (ReT v1 and ReT-2 configurations), and text
encoders in the sentence-transformers format (`load_encoder` loads either kind).

torch and transformers are imported when a model is built or loaded, not when this package is
imported.
"""

from __future__ import annotations

from ragvqa.models.checkpoint import load_retriever
from ragvqa.models.config import PRESETS, HeadConfig, RetrieverConfig, preset
from ragvqa.models.encoders import load_encoder

__all__ = ["PRESETS", "HeadConfig", "RetrieverConfig", "load_encoder", "load_retriever", "preset"]
