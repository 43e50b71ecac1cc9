"""What is under a data root: catalogue files checked, benchmark questions without an image.

`check_artefact` reports a catalogue entry's status and, for a present file, its sha256 (where
the catalogue has one), its size (where the catalogue size is exact) and its record count
(JSONL lines, CSV rows, the keys or items of a JSON file whose count the catalogue pins), next
to the expected count where the catalogue has one. For a pypi folder: the files the catalogue pins
(`files_sha256`), the folder's total size where it is exact, and for a built folder its
`ragvqa-build.json` (the source checksums it records must be the catalogue's).
`missing_images` counts the questions of a benchmark file whose image is not on disk (the
benchmark's plug-in knows where its images are).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragvqa.errors import UserError
from ragvqa.fetch.catalogue import Artefact
from ragvqa.fetch.fetch import PRESENT, status
from ragvqa.io import decoded_lines, open_text, read_json, sha256_file

if TYPE_CHECKING:  # an annotation only: data/ sits below the benchmark plug-ins
    from ragvqa.benchmarks.base import Benchmark

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
    if report["status"] == PRESENT and artefact.kind == "pypi" and path.is_dir():
        _check_folder(artefact, path, report)
    if report["status"] != PRESENT or not path.is_file():
        return report
    report["bytes"] = path.stat().st_size
    if artefact.sha256:
        report["sha256"] = "ok" if sha256_file(path) == artefact.sha256 else "mismatch"
        report["ok"] &= report["sha256"] == "ok"
    if artefact.size is not None and artefact.size_exact:
        report["size"] = "ok" if report["bytes"] == artefact.size else "mismatch"
        report["ok"] &= report["size"] == "ok"
    if path.suffix in (".jsonl", ".csv") or (path.suffix == ".json" and artefact.records):
        report["records"] = count_records(path)
        if artefact.records is not None:
            report["records_expected"] = artefact.records
            report["ok"] &= report["records"] == artefact.records
    return report


def _check_folder(artefact: Artefact, folder: Path, report: dict[str, Any]) -> None:
    """`files_sha256`, the exact total size and the build record of a pypi folder."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    report["bytes"] = sum(p.stat().st_size for p in files)
    report["files"] = len(files)
    if artefact.files_sha256:
        bad = [
            relative
            for relative, expected in artefact.files_sha256
            if not (folder / relative).is_file() or sha256_file(folder / relative) != expected
        ]
        report["files_sha256"] = "ok" if not bad else "mismatch"
        report["files_checked"] = len(artefact.files_sha256)
        if bad:
            report["files_bad"] = bad
        report["ok"] &= not bad
    if artefact.size is not None and artefact.size_exact:
        report["size"] = "ok" if report["bytes"] == artefact.size else "mismatch"
        report["ok"] &= report["size"] == "ok"
    if artefact.build:
        report["build"] = _check_build(artefact, folder)
        report["ok"] &= report["build"] == "ok"


def _check_build(artefact: Artefact, folder: Path) -> str:
    """'ok' when the folder's build record names the catalogue's wheels and source checksum."""
    from ragvqa.fetch.gguf import read_record

    record = read_record(folder)
    if record is None:
        return "missing"
    assert artefact.wheel is not None
    pinned = [(w.package, w.wheel_sha256) for w in (artefact.wheel, *artefact.parts)]
    recorded = [(w.get("package"), w.get("wheel_sha256")) for w in record.get("wheels", [])]
    source = (record.get("gguf") or {}).get("sha256")
    if recorded != pinned or (artefact.sha256 and source != artefact.sha256):
        return "mismatch"
    return "ok"


def count_records(path: Path) -> int:
    """Non-blank lines of a JSONL file; data rows (after the header) of a CSV file; top-level
    keys (an object) or items (an array) of a JSON file."""
    if path.suffix == ".json":
        data = read_json(path, what="JSON file")
        return len(data) if isinstance(data, dict | list) else 0
    if path.suffix == ".csv":
        csv.field_size_limit(1 << 30)
        with open_text(path) as fh:
            try:
                return max(sum(1 for _ in csv.reader(decoded_lines(fh, path))) - 1, 0)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise UserError(f"unreadable CSV ({exc})", path=str(path)) from None
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def missing_images(
    benchmark: Benchmark, questions: str | Path, roots: dict[str, str]
) -> dict[str, Any]:
    """Questions of `benchmark`'s questions file whose image is not under the image roots of
    its benchmark.yaml (each plug-in knows how its images are found); the roots that exist."""
    present = {key: Path(value).exists() for key, value in roots.items()}
    existing = {k: v for k, v in roots.items() if present[k]}
    count, missing = benchmark.missing_images({"questions": str(questions)}, existing)
    return {
        "questions": count,
        "missing_images": len(missing),
        "first_missing": missing[:SHOW_MISSING],
        "image_roots": {key: {"path": roots[key], "present": present[key]} for key in roots},
    }
