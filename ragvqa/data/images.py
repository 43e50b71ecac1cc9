"""Finding benchmark images on disk from a user-given root.

Layouts:
- OVEN (InfoSeek): `<root>/<image_id[5:7]>/<image_id>.<ext>` with any extension (.jpg, .JPEG,
  ...); the flat `<root>/<image_id>.<ext>` of M2KR's image archives is accepted too.
- Google Landmarks v2 (E-VQA `landmarks`): `<root>/train/<id[0]>/<id[1]>/<id[2]>/<id>.jpg`,
  or the same without `train/` when the root is the train folder itself.
- iNaturalist 2021 (E-VQA `inaturalist`): ids map to files through a JSON file, either the
  iNat annotation format (`{"images": [{"id": ..., "file_name": ...}]}`) or a flat
  `{id: file_name}` mapping; file names are relative to the iNat root.

A missing image is not an error: `resolve_images` reports it per example.

Reading pixels is `ragvqa.images` (`open_image`, `check_image`), re-exported here for code that
imported them from this module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ragvqa.errors import UserError
from ragvqa.images import MAX_ASPECT_RATIO, check_image, open_image, size_problem
from ragvqa.io import read_json
from ragvqa.types import BenchmarkExample


class OvenImages:
    """OVEN image ids -> files, listing each shard folder once (ids do not fix the extension)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError("image folder not found", path=str(self.root))
        self._listings: dict[Path, dict[str, str]] = {}

    def _listing(self, folder: Path) -> dict[str, str]:
        if folder not in self._listings:
            names: dict[str, str] = {}
            if folder.is_dir():
                with os.scandir(folder) as entries:
                    for entry in entries:
                        stem, dot, _ = entry.name.rpartition(".")
                        if dot:
                            names.setdefault(stem, entry.name)
            self._listings[folder] = names
        return self._listings[folder]

    def resolve(self, image_id: str) -> Path | None:
        for folder in (self.root / image_id[5:7], self.root):
            name = self._listing(folder).get(image_id)
            if name is not None:
                return folder / name
        return None


class GldV2Images:
    """Google Landmarks v2 train images by their 16-hex id."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError("image folder not found", path=str(self.root))

    def resolve(self, image_id: str) -> Path | None:
        if len(image_id) < 3:
            return None
        rel = Path(image_id[0], image_id[1], image_id[2], f"{image_id}.jpg")
        for candidate in (self.root / "train" / rel, self.root / rel):
            if candidate.is_file():
                return candidate
        return None


class INatImages:
    """iNaturalist 2021 images through an id -> file-name JSON."""

    def __init__(self, root: str | Path, id2name: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError("image folder not found", path=str(self.root))
        self.names = load_id2name(id2name)

    def resolve(self, image_id: str) -> Path | None:
        name = self.names.get(image_id)
        if name is None:
            return None
        path = self.root / name
        return path if path.is_file() else None


def load_id2name(path: str | Path) -> dict[str, str]:
    """Read an iNat id -> file-name mapping (iNat annotation JSON or a flat object)."""
    data = read_json(path, what="iNat id -> file-name mapping")
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        try:
            return {str(im["id"]): str(im["file_name"]) for im in data["images"]}
        except (KeyError, TypeError):
            raise UserError("'images' entries need 'id' and 'file_name'", path=str(path)) from None
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        return {str(k): v for k, v in data.items()}
    raise UserError("expected {id: file_name} or iNat {'images': [...]}", path=str(path))


@dataclass(frozen=True)
class ImageRoots:
    """Where each image collection lives; unset collections resolve nothing."""

    oven: str | Path | None = None
    landmarks: str | Path | None = None
    inaturalist: str | Path | None = None
    inaturalist_id2name: str | Path | None = None


def resolve_images(
    examples: Sequence[BenchmarkExample], roots: ImageRoots
) -> tuple[list[BenchmarkExample], list[str]]:
    """Fill `image_path` from the first image id of each example.

    Returns:
        (examples with image_path set where found, ids of the examples whose image is missing)
    """
    resolvers = {}
    if roots.oven is not None:
        resolvers["oven"] = OvenImages(roots.oven)
    if roots.landmarks is not None:
        resolvers["landmarks"] = GldV2Images(roots.landmarks)
    if roots.inaturalist is not None:
        if roots.inaturalist_id2name is None:
            raise UserError("iNaturalist images need the id -> file-name JSON (id2name)")
        resolvers["inaturalist"] = INatImages(roots.inaturalist, roots.inaturalist_id2name)
    out, missing = [], []
    for example in examples:
        resolver = resolvers.get(example.image_dataset)
        path = resolver.resolve(example.image_id) if resolver and example.image_id else None
        if path is None:
            missing.append(example.example_id)
        out.append(replace(example, image_path=str(path) if path else None))
    return out, missing


__all__ = [
    "MAX_ASPECT_RATIO",
    "GldV2Images",
    "INatImages",
    "ImageRoots",
    "OvenImages",
    "check_image",
    "load_id2name",
    "open_image",
    "resolve_images",
    "size_problem",
]
