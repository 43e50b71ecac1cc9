"""ragvqa: retrieval-augmented visual question answering on encyclopedic knowledge.

Importing the package is cheap on purpose: heavy libraries (torch, transformers, vLLM, faiss,
datasets) are imported only inside the adapters that need them.
"""

__version__ = "0.1.0"
