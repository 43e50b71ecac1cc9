"""Benchmark loaders: official InfoSeek and Encyclopedic-VQA files into `BenchmarkExample`s."""
