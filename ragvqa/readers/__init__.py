"""Readers: generation backends (vLLM in-process, OpenAI-compatible HTTP, transformers)."""
