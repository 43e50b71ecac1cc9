"""Uploaded images, checked and stored as files for the pipeline to read.

The pipeline reads images from files, so every upload (a multipart file, or a `data:` URI) is
written to the server's upload folder as `<query id>.<format>` and checked the way
`ragvqa answer` checks a file: not empty, under the size cap, an image, not a decompression
bomb, no more than 50:1 (`ragvqa.images.check_image`, which reads the header only). A file
that is truncated further in is caught when the encoder decodes it (`open_image`, which also
turns it upright by its EXIF orientation), and its answer comes back with an error.
A stored image lives as long as its question is in the server's cache of recent retrievals.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path

from PIL import Image

from ragvqa.images import check_image, open_image
from ragvqa.serve.errors import RequestError, one_line

_DATA_URI = re.compile(r"\Adata:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*);base64,(.*)\Z", re.S)
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png"}


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a base64 `data:` URI ("data:image/jpeg;base64,..."); the server fetches
    no URLs."""
    match = _DATA_URI.match(uri.strip())
    if match is None:
        raise RequestError(
            "image_url must be a base64 data URI (data:image/jpeg;base64,...): "
            "the server fetches no URLs"
        )
    if match.group(1) and not match.group(1).startswith("image/"):
        raise RequestError(f"image_url is {match.group(1)}, not an image")
    try:
        return base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("image_url: invalid base64") from None


class UploadStore:
    """The server's folder of uploaded images (one file per question)."""

    def __init__(self, folder: str | Path, max_bytes: int):
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self.names: dict[str, str] = {}  # stored path -> the name the client gave

    def save(self, data: bytes, name: str, key: str) -> str:
        """Store one image under `key` (a query id) and return its path; a bad image is a
        `RequestError` naming the problem and the upload's `name`."""
        name = one_line(name or "image", 120)
        if not data:
            raise RequestError(f"image file is empty: {name}")
        if len(data) > self.max_bytes:
            raise RequestError(
                f"image larger than {self.max_bytes / 2**20:g} MB: {name}", status=413
            )
        path = self.folder / key
        path.write_bytes(data)
        problem = check_image(str(path))
        if problem is not None:
            path.unlink(missing_ok=True)
            raise RequestError(f"{problem.split(': ')[0]}: {name}")
        with Image.open(path) as img:
            kind = img.format or "IMAGE"
        final = path.with_suffix(_EXTENSIONS.get(kind, f".{kind.lower()}"))
        path.rename(final)
        self.names[str(final)] = name
        return str(final)

    def remove(self, path: str | None) -> None:
        """Delete a stored image (a question left the cache, or failed)."""
        if path and Path(path).parent == self.folder:
            Path(path).unlink(missing_ok=True)
            self.names.pop(path, None)

    def client_name(self, message: str, path: str | None) -> str:
        """`message` naming the upload as the client did, not by its path on the server."""
        return message.replace(path, self.names.get(path, "image")) if path else message


def thumbnail(path: str, box: int = 160) -> bytes:
    """A JPEG of the image at `path` that fits in `box` x `box` pixels (evidence thumbnails:
    a KB's images can be large, the page shows them small)."""
    img = open_image(path, draft=box)  # upright (EXIF), size checked; a UserError if bad
    img.thumbnail((box, box))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()
