"""Image preprocessing throughput of ReT encoding on this machine's CPUs: prints JSON.

Encoding a KB on a GPU is only as fast as the CPU side that feeds it: every document image is
decoded, resized to 224 px, cropped and normalised before the towers see it. This measures that
step alone (`RetEncoder._prepare`: load + the CLIP image processor), on synthetic JPEGs of a
typical Wikipedia image size, with 1, 2 and 4 worker threads (the encoder's default is 4), so
it can be compared with the GPU's documents/s from `encoder.py`.

Run: python benchmarks/perf/preprocess.py [--images 256] [--size 1024x768]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def write_images(folder: Path, count: int, width: int, height: int) -> list[str]:
    """JPEGs with smooth gradients and noise (compress like photos, unlike flat colours)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    paths = []
    for i in range(count):
        base = (x * rng.uniform(0.1, 0.3) + y * rng.uniform(0.1, 0.3) + i * 7) % 256
        noise = rng.normal(0, 12, size=(height, width, 3))
        rgb = np.clip(base[..., None] + noise + rng.uniform(0, 80, 3), 0, 255).astype(np.uint8)
        path = folder / f"img{i:04d}.jpg"
        Image.fromarray(rgb).save(path, quality=90)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of the JPEGs")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    args = parser.parse_args()
    from transformers import CLIPImageProcessor

    from ragvqa.models.encode import RetEncoder
    from ragvqa.models.processor import RetProcessor

    width, height = (int(v) for v in args.size.split("x"))
    processor = RetProcessor(None, CLIPImageProcessor())  # CLIP's 224 px settings
    encoder = RetEncoder.__new__(RetEncoder)  # only the preprocessing side is used
    encoder.processor = processor
    from ragvqa.models.encode import EncodeStats

    encoder.stats = EncodeStats()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), args.images, width, height)
        encoder._prepare(paths[0])  # warm-up
        for workers in args.workers:
            with ThreadPoolExecutor(workers) as pool:
                start = time.perf_counter()
                shapes = {tuple(p.shape) for p, _ in pool.map(encoder._prepare, paths)}
                seconds = time.perf_counter() - start
            runs.append(
                {
                    "workers": workers,
                    "images_per_s": round(len(paths) / seconds, 1),
                    "ms_per_image": round(1000 * seconds / len(paths), 2),
                    "pixel_values_shape": sorted(shapes)[0],
                }
            )
    print(
        json.dumps(
            {
                "machine": {"cpu": platform.machine(), "cpus": os.cpu_count()},
                "images": args.images,
                "jpeg_size": [width, height],
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
