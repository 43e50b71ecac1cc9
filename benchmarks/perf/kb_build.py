"""KB build throughput and memory: prints JSON.

Writes a synthetic knowledge base in E-VQA format (one JSON object of `--pages` pages, 5
sections of ~60 words each, 3 image URLs per page) to a temporary folder, then builds it with
`ragvqa.kb.build` in a child process and reports pages/s, passages/s and the child's peak RSS.
Target (issue 4): 200K pages with peak RSS under 1 GB.

Run: python benchmarks/perf/kb_build.py [--pages 200000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = "the of bridge river church built century town north saint museum war king old".split()


def write_kb(path: Path, pages: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("{")
        for i in range(pages):
            url = f"https://en.wikipedia.org/wiki/Page_{i}"
            entry = {
                "title": f"Page {i}",
                "section_titles": [f"Page {i}", "History", "Geography", "Culture", "See also"],
                "section_texts": [" ".join(rng.choices(WORDS, k=60)) for _ in range(5)],
                "image_urls": [f"https://upload.wikimedia.org/x/{i}_{j}.jpg" for j in range(3)],
                "image_section_indices": [0, 1, 1],
                "image_reference_descriptions": ["", "", ""],
                "url": url,
            }
            fh.write(("," if i else "") + json.dumps(url) + ":" + json.dumps(entry))
        fh.write("}")


def child(kb: str, out: str) -> None:
    from ragvqa.kb.build import BuildParams, build_kb

    start = time.perf_counter()
    manifest = build_kb(BuildParams("evqa", kb), out, progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "pages": manifest["pages"],
                "passages": manifest["passages"],
                "peak_rss_mib": peak,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        kb = Path(tmp) / "encyclopedic_kb_wiki.json"
        write_kb(kb, args.pages)
        size = kb.stat().st_size
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(kb), str(Path(tmp) / "out")],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout)
    print(
        json.dumps(
            {
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "python": platform.python_version(),
                },
                "kb_pages": args.pages,
                "kb_json_mib": round(size / 2**20, 1),
                "passages": result["passages"],
                "seconds": round(result["seconds"], 1),
                "pages_per_s": round(result["pages"] / result["seconds"], 1),
                "passages_per_s": round(result["passages"] / result["seconds"], 1),
                "peak_rss_mib": round(result["peak_rss_mib"], 1),
                "target_peak_rss_mib": 1024,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
