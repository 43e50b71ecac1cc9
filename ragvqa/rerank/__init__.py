"""Rerankers: reorder first-stage results before the reader sees them."""
