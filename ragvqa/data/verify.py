"""What is under a data root: catalogue files checked, benchmark questions without an image.

`check_artefact` reports a catalogue entry's status and, for a present file, its sha256 (where
the catalogue has one), its size (where the catalogue size is exact) and its record count
(JSONL lines, CSV rows), next to the expected count where the catalogue has one.
`missing_images` counts the questions of a benchmark file whose image is not on disk.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ragvqa.data.catalogue import Artefact
from ragvqa.data.fetch import PRESENT, sha256_of, status
from ragvqa.errors import UserError

SHOW_MISSING = 5


def check_artefact(artefact: Artefact, root: str | Path) -> dict[str, Any]:
    """Status and checks of one artefact; `ok` is False only when a check fails."""
    path = artefact.path(root)
    report: dict[str, Any] = {
        "name": artefact.name,
        "kind": artefact.kind,
        "status": status(artefact, root),
        "path": str(path),
        "ok": True,
    }
    if report["status"] != PRESENT or not path.is_file():
        return report
    report["bytes"] = path.stat().st_size
    if artefact.sha256:
        report["sha256"] = "ok" if sha256_of(path) == artefact.sha256 else "mismatch"
        report["ok"] &= report["sha256"] == "ok"
    if artefact.size is not None and artefact.size_exact:
        report["size"] = "ok" if report["bytes"] == artefact.size else "mismatch"
        report["ok"] &= report["size"] == "ok"
    if path.suffix in (".jsonl", ".csv"):
        report["records"] = count_records(path)
        if artefact.records is not None:
            report["records_expected"] = artefact.records
            report["ok"] &= report["records"] == artefact.records
    return report


def count_records(path: Path) -> int:
    """Non-blank lines of a JSONL file; data rows (after the header) of a CSV file."""
    if path.suffix == ".csv":
        csv.field_size_limit(1 << 30)
        with path.open(encoding="utf-8", newline="") as fh:
            try:
                return max(sum(1 for _ in csv.reader(fh)) - 1, 0)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise UserError(f"unreadable CSV ({exc})", path=str(path)) from None
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def missing_images(benchmark: str, questions: str | Path, roots: dict[str, str]) -> dict[str, Any]:
    """Questions whose image is not found under the image roots of benchmark.yaml.

    InfoSeek: each question's `image_id` looked up under the OVEN root (`OvenImages`).
    E-VQA: the first image id of each row through `resolve_images` with the roots that exist
    (iNaturalist needs its id -> file-name JSON as well).
    """
    present = {key: Path(value).exists() for key, value in roots.items()}
    if benchmark == "infoseek":
        ids, missing = _infoseek_missing(questions, roots.get("oven"))
    elif benchmark == "evqa":
        ids, missing = _evqa_missing(questions, {k: v for k, v in roots.items() if present[k]})
    else:
        raise UserError(f"unknown benchmark {benchmark!r} (infoseek or evqa)")
    return {
        "questions": ids,
        "missing_images": len(missing),
        "first_missing": missing[:SHOW_MISSING],
        "image_roots": {key: {"path": roots[key], "present": present[key]} for key in roots},
    }


def _infoseek_missing(questions: str | Path, oven: str | None) -> tuple[int, list[str]]:
    from ragvqa.data.fields import get_str
    from ragvqa.data.images import OvenImages
    from ragvqa.io import iter_jsonl

    pairs = [
        (
            get_str(obj, "data_id", str(questions), line),
            get_str(obj, "image_id", str(questions), line),
        )
        for line, obj in iter_jsonl(questions)
    ]
    if not oven or not Path(oven).is_dir():
        return len(pairs), [data_id for data_id, _ in pairs]
    images = OvenImages(oven)
    return len(pairs), [data_id for data_id, image_id in pairs if images.resolve(image_id) is None]


def _evqa_missing(questions: str | Path, roots: dict[str, str]) -> tuple[int, list[str]]:
    from ragvqa.data.evqa import load_evqa
    from ragvqa.data.images import ImageRoots, resolve_images

    if "inaturalist_id2name" not in roots:
        roots.pop("inaturalist", None)  # iNat files cannot be found without the mapping
    if "inaturalist" not in roots:
        roots.pop("inaturalist_id2name", None)
    known = {k: v for k, v in roots.items() if k in ImageRoots.__dataclass_fields__}
    examples = load_evqa(questions)
    _, missing = resolve_images(examples, ImageRoots(**known))
    return len(examples), missing
