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

`open_image` is the one way an image's pixels are read (EXIF orientation applied, size and
aspect ratio checked before decoding); `check_image` makes the same checks from the header.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
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


# Images further from square than this are refused: the encoder resizes the shortest edge to
# its input size (224 or 336), so a 1 x 2,000,000 strip would become 224 x 448,000,000 pixels
# (300 GB); at 50:1 the resized image is at most 50 x 336^2 pixels (17 MB).
MAX_ASPECT_RATIO = 50


def size_problem(width: int, height: int) -> str | None:
    """Why an image of this size cannot be used (None when it can): no pixels, more pixels than
    PIL's decompression-bomb limit, or an aspect ratio beyond `MAX_ASPECT_RATIO`:1."""
    from PIL import Image

    if width < 1 or height < 1:
        return f"image has no pixels ({width}x{height})"
    if width * height > (Image.MAX_IMAGE_PIXELS or width * height):
        return f"image too large ({width}x{height} pixels)"
    long, short = max(width, height), min(width, height)
    if long > MAX_ASPECT_RATIO * short:
        ratio = long / short
        shown = f"{ratio:.0f}" if ratio >= 100 else f"{ratio:.1f}".removesuffix(".0")
        return (
            f"image aspect ratio {shown}:1 exceeds {MAX_ASPECT_RATIO}:1 ({width}x{height} pixels)"
        )
    return None


def check_image(path: str | None) -> str | None:
    """Why an image cannot be used (None when it can): missing, empty, not an image, too big,
    too thin (`size_problem`). Reads the header only; truncated files are caught when the
    encoder decodes them (`open_image`)."""
    from PIL import Image  # decodes headers only; PIL is a base dependency

    if path is None:
        return "image not found"
    file = Path(path)
    if not file.is_file():
        return f"image not found: {path}"
    if file.stat().st_size == 0:
        return f"image file is empty: {path}"
    try:
        with Image.open(file) as img:
            width, height = img.size
    except Image.DecompressionBombError:
        return f"image too large (decompression bomb): {path}"
    except Exception:
        return f"not an image: {path}"
    problem = size_problem(width, height)
    return f"{problem}: {path}" if problem else None


def open_image(path: str | Path, *, draft: int | None = None) -> Any:
    """The image at `path` as an RGB PIL image, upright: the one way ragvqa reads an image's
    pixels (the encoder, training, the server's thumbnails, the report).

    Its size is checked from the header before any pixel is decoded (`size_problem`: the
    decompression-bomb limit and the aspect ratio), and its EXIF orientation is applied
    (`ImageOps.exif_transpose`), so a phone's portrait is not read lying on its side.

    Args:
        draft: Decode a JPEG at a reduced scale whose sides are still at least this many
            pixels (thumbnails); the size check is made on the full size first.

    Raises:
        UserError: naming the file and the problem (not found, not an image, too large, too
            thin, truncated or corrupt).
    """
    from PIL import Image, ImageOps

    where = str(path)
    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise UserError("image not found", path=where) from None
    except Image.DecompressionBombError:
        raise UserError("image too large (decompression bomb)", path=where) from None
    except Exception:  # PIL raises UnidentifiedImageError, OSError, ValueError, SyntaxError...
        raise UserError("not an image", path=where) from None
    with img:
        problem = size_problem(*img.size)
        if problem is not None:
            raise UserError(problem, path=where)
        try:
            if draft is not None:
                img.draft("RGB", (draft, draft))
            rgb = img.convert("RGB")
        except MemoryError:
            raise UserError("image too large to decode (out of memory)", path=where) from None
        except Exception:
            raise UserError("image is truncated or corrupt", path=where) from None
    # a malformed EXIF block: the pixels are fine, keep them as stored
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(rgb, in_place=True)
    return rgb
