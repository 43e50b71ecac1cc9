"""Resolving KB image URLs to local files, counting the ones that have no pixels.

About 1.25M of the E-VQA KB's image URLs have no downloadable image: a missing image is
counted, never fatal. Two ways to say where images are: a JSON mapping {url: path} (paths
relative to the mapping file), or a folder holding files named after the URL's last segment
(or, for KBs that store relative image paths such as ReT-M2KR, the folder they are relative to).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from ragvqa.errors import UserError
from ragvqa.io import read_json


class ImageResolver:
    """URL -> local path; counts resolved and missing images."""

    def __init__(self, folder: str | Path | None = None, mapping: str | Path | None = None):
        self.folder = Path(folder) if folder else None
        if self.folder is not None and not self.folder.is_dir():
            raise UserError("image folder not found", path=str(self.folder))
        self.mapping: dict[str, str] = {}
        if mapping:
            shape = "a JSON object {url: path}"
            data = read_json(mapping, what="image mapping", expect=dict, shape=shape)
            base = Path(mapping).parent
            self.mapping = {str(k): str(base / v) for k, v in data.items() if isinstance(v, str)}
        self.enabled = self.folder is not None or bool(self.mapping)
        self.found = 0
        self.missing = 0
        self.urls = 0

    def _path(self, url: str) -> str | None:
        if url in self.mapping:
            return self.mapping[url] if os.path.isfile(self.mapping[url]) else None
        if self.folder is not None:
            parsed = urlparse(url)
            # a URL: the file named after its last segment; a relative path: under the folder
            name = unquote(Path(parsed.path).name) if parsed.scheme else url
            candidate = self.folder / name
            return str(candidate) if candidate.is_file() else None
        return None

    def __call__(self, urls: tuple[str, ...]) -> tuple[str, ...]:
        self.urls += len(urls)
        if not self.enabled:
            return ()
        paths = tuple(p for p in (self._path(u) for u in urls) if p is not None)
        self.found += len(paths)
        self.missing += len(urls) - len(paths)
        return paths
