"""A third benchmark, registered by the tests: M2KR's InfoSeek passage-retrieval task.

One module and one YAML (`m2kr-infoseek-passages/benchmark.yaml` beside this file) are all a
benchmark takes. Rows are M2KR's (`question_id`, `question`, `img_path` relative to the image
root, `pos_item_ids`: the passages that answer the question); there are no answers to score,
so it runs retrieval only and reports recall@K over the gold passage ids, the way the ReT
papers report their retrieval tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ragvqa.benchmarks import Benchmark
from ragvqa.data.fields import get_str
from ragvqa.io import iter_jsonl
from ragvqa.types import BenchmarkExample

NAME = "m2kr-infoseek-passages"


class M2KRPassages(Benchmark):
    name = NAME
    title = "M2KR InfoSeek passage retrieval"
    image_root = "m2kr"
    scores_answers = False

    def folder(self) -> Path:
        return Path(__file__).resolve().parent / NAME

    def load(self, files: Mapping[str, str]) -> list[BenchmarkExample]:
        path = files["questions"]
        return [
            BenchmarkExample(
                example_id=get_str(row, "question_id", path, line),
                dataset=NAME,
                question=get_str(row, "question", path, line),
                image_ids=(get_str(row, "img_path", path, line),),
                entity_ids=tuple(str(x) for x in row.get("pos_item_ids") or ()),
                source=f"{path}:{line}",
            )
            for line, row in iter_jsonl(path)
        ]

    def resolve_images(
        self, examples: Sequence[BenchmarkExample], roots: Mapping[str, str]
    ) -> tuple[list[BenchmarkExample], list[str]]:
        """M2KR's images are flat files under one root, named by `img_path`."""
        root = Path(roots.get(self.image_root, ""))
        out, missing = [], []
        for e in examples:
            file = root / e.image_ids[0]
            out.append(replace(e, image_path=str(file) if file.is_file() else None))
            if not file.is_file():
                missing.append(e.example_id)
        return out, missing
