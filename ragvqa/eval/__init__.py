"""Scoring: official InfoSeek and E-VQA scorers, BEM, retrieval metrics, prediction files."""
