"""The M2KR copies of InfoSeek and E-VQA (PreFLMR's benchmark) through `datasets`.

M2KR (`BByrneLab/multi_task_multi_modal_knowledge_retrieval_benchmark_M2KR` on the Hugging Face
hub) ships each benchmark as a configuration: `Infoseek_data` (splits train, test; its test
questions are InfoSeek val questions) and `EVQA_data` (train, valid, test), with relative image
paths in `img_path` and gold passage ids in `pos_item_ids`. Real users load it from the hub;
tests and offline users point `source` at a local folder in the hub's layout:
`<source>/<config>/<split>-*.parquet` (`ragvqa.hub.load_rows` reads both, through `datasets`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.hub import load_rows
from ragvqa.types import BenchmarkExample, NumericRange

M2KR_REPO = "BByrneLab/multi_task_multi_modal_knowledge_retrieval_benchmark_M2KR"
CONFIGS = {"infoseek": "Infoseek_data", "evqa": "EVQA_data"}
IMAGE_DATASETS = {"infoseek": "oven"}  # the image collection of a configuration, where known


def _strs(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def load_m2kr(
    dataset: str,
    split: str,
    *,
    source: str = M2KR_REPO,
    image_root: str | Path | None = None,
) -> list[BenchmarkExample]:
    """Load M2KR's copy of a benchmark as `BenchmarkExample`s, in dataset order.

    Args:
        dataset: "infoseek" or "evqa".
        split: "train", "valid" (E-VQA only) or "test".
        source: Hub dataset id, or a local folder in the hub's layout.
        image_root: Folder that `img_path` is relative to; sets `image_path` where the file exists.
    """
    if dataset not in CONFIGS:
        raise UserError(f"unknown M2KR dataset {dataset!r} (expected infoseek or evqa)")
    config = CONFIGS[dataset]
    rows = load_rows(source, config, split)
    root = Path(image_root) if image_root is not None else None
    return [
        _example(dataset, row, i, root, f"{source}/{config}/{split}:{i}")
        for i, row in enumerate(rows)
    ]


def _example(
    dataset: str, row: dict[str, Any], index: int, root: Path | None, source: str
) -> BenchmarkExample:
    image_path = None
    if root is not None and row.get("img_path"):
        candidate = root / str(row["img_path"])
        image_path = str(candidate) if candidate.is_file() else None
    numeric = None
    bounds = row.get("wikidata_range")
    if str(row.get("question_type", "")).lower() == "numerical" and bounds and len(bounds) >= 2:
        numeric = NumericRange(float(bounds[0]), float(bounds[1]))
    entity = str(row.get("entity_id") or "")
    return BenchmarkExample(
        example_id=str(row.get("question_id", index)),
        dataset=dataset,
        question=str(row.get("question") or ""),
        image_ids=_strs(row.get("image_id")),
        answers=_strs(row.get("answers")),
        answer_eval=_strs(row.get("answer_eval")) if numeric is None else (),
        numeric_range=numeric,
        question_type=str(row.get("question_type") or ""),
        split=str(row.get("data_split") or ""),
        entity_ids=(entity,) if entity else _strs(row.get("pos_item_ids")),
        entity_names=_strs(row.get("entity_text")),
        image_dataset=IMAGE_DATASETS.get(dataset, ""),
        image_path=image_path,
        source=source,
    )
