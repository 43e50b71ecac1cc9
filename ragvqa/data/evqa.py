"""Loader for the official Encyclopedic-VQA CSV files (train.csv, val.csv, test.csv).

Columns are read by header name and every cell as a string. E-VQA rows have no id: the id of
a row is its 0-based row number in the file, as a string ("0", "1", ...). '|' separates
alternative answers, image ids and (for 2_hop questions) the two Wikipedia URLs.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ragvqa.errors import UserError
from ragvqa.io import decoded_lines, open_text
from ragvqa.types import BenchmarkExample

QUESTION_TYPES = ("templated", "automatic", "multi_answer", "2_hop")
# the columns of the official CSVs, in their order
COLUMNS = (
    "question",
    "answer",
    "dataset_image_ids",
    "dataset_name",
    "dataset_category_id",
    "question_type",
    "wikipedia_url",
    "wikipedia_title",
    "evidence",
    "evidence_section_id",
    "evidence_section_title",
    "encyclopedic_vqa_split",
    "question_original",
    "wikipedia_url_used_in_train",
)
REQUIRED_COLUMNS = ("question", "answer", "question_type", "dataset_image_ids", "dataset_name")


def _split_bar(cell: str) -> tuple[str, ...]:
    return tuple(cell.split("|")) if cell else ()


def load_evqa(path: str | Path) -> list[BenchmarkExample]:
    """Load an E-VQA CSV, in file order.

    Raises:
        UserError: a required column is missing, or a row has the wrong number of fields
            (the error names the physical line).
    """
    csv.field_size_limit(1 << 30)  # evidence cells can be long
    with open_text(path) as fh:
        reader = csv.reader(decoded_lines(fh, path))  # BOM dropped, bad bytes: their line
        try:
            header = next(reader)
        except StopIteration:
            raise UserError("empty CSV file, expected a header line", path=str(path)) from None
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise UserError(f"missing column(s) {', '.join(missing)}", path=str(path), line=1)
        col = {name: i for i, name in enumerate(header)}
        examples = []
        try:
            for row_number, cells in enumerate(reader):
                if len(cells) != len(header):
                    raise UserError(
                        f"expected {len(header)} fields, got {len(cells)}",
                        path=str(path),
                        line=reader.line_num,
                    )
                examples.append(_example(row_number, cells, col, f"{path}:{reader.line_num}"))
        except csv.Error as exc:
            raise UserError(
                f"malformed CSV ({exc})", path=str(path), line=reader.line_num
            ) from None
    return examples


def _example(row: int, cells: list[str], col: dict[str, int], source: str) -> BenchmarkExample:
    def cell(name: str) -> str:
        return cells[col[name]] if name in col else ""

    return BenchmarkExample(
        example_id=str(row),
        dataset="evqa",
        question=cell("question"),
        image_ids=_split_bar(cell("dataset_image_ids")),
        answers=tuple(cell("answer").split("|")),  # empty alternatives kept: an error when scored
        question_type=cell("question_type"),
        split=cell("encyclopedic_vqa_split"),
        entity_ids=_split_bar(cell("wikipedia_url")),
        entity_names=_split_bar(cell("wikipedia_title")),
        image_dataset=cell("dataset_name"),
        source=source,
    )
