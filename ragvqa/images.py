"""Reading an image's pixels: the one way ragvqa does it, for every layer that needs them.

`open_image` decodes (EXIF orientation applied, size and aspect ratio checked before any pixel
is decoded); `check_image` makes the same checks from the header only; `size_problem` says why
a size cannot be used. The encoder, training, the server's uploads and thumbnails, the report and
the question loaders all call these, so they live at the package root, below every folder
(`ragvqa.data.images` finds benchmark images on disk and re-exports them).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError

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
