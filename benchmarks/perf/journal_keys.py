"""The driver's work per question before reading: the generation journal's keys; prints JSON.

`Pipeline.read_batch` keys each reader batch by the reader's identity and, per question, its
id, its passages and the prompt the template renders from them, each image by the sha256 of its
bytes (`ragvqa.cached_stages.read_keys`). The driver computes every key before the first batch
goes out (it must know which batches the journal already holds), with the local executor and
with the Ray executor alike, so this time bounds how fast a run can be fed. Measured here with
the default pipeline's reader settings (`answer/evidence_short@1`, 1 passage, the image) over
questions with 5 retrieved passages of 120 words, their images `--images` distinct JPEGs of
320 x 240 noise (the size each is printed as `image_kb`).

Run: python benchmarks/perf/journal_keys.py [--questions 2000] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

INFOSEEK_VAL = 73_620


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--images", type=int, default=200, help="distinct image files")
    args = parser.parse_args()
    import numpy as np
    from PIL import Image

    from ragvqa.cached_stages import read_keys
    from ragvqa.prompts import PromptLibrary
    from ragvqa.reader_settings import reader_settings
    from ragvqa.schema.sections import ReaderSection
    from ragvqa.types import Answer, Passage, RetrievedPassage

    settings = reader_settings(ReaderSection())
    template = PromptLibrary().get(settings.prompt)
    rng = random.Random(0)
    words = ["bridge", "river", "church", "opened", "built", "tower", "1826", "stone", "city"]
    tmp = tempfile.TemporaryDirectory()
    images = []
    for i in range(args.images):  # noise: it compresses as badly as a photo
        pixels = np.random.default_rng(i).integers(0, 255, (240, 320, 3), dtype=np.uint8)
        path = Path(tmp.name) / f"{i}.jpg"
        Image.fromarray(pixels).save(path, quality=85)
        images.append(str(path))
    answers = [
        Answer(
            query_id=f"val_{i:08d}",
            question=f"When was this {rng.choice(words)} built?",
            image=images[i % len(images)],
            passages=tuple(
                RetrievedPassage(
                    Passage(f"p{i}-{r}", " ".join(rng.choices(words, k=120)), title=f"Page {r}"),
                    1.0 - r / 10,
                    r,
                )
                for r in range(5)
            ),
        )
        for i in range(args.questions)
    ]
    chunks = [answers[i : i + args.batch] for i in range(0, len(answers), args.batch)]
    read_keys("reader", template, settings, chunks[:1])  # the template's code compiled once
    started = time.perf_counter()
    keys = read_keys("reader", template, settings, chunks)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    for a in answers:
        template.render(question=a.question, passages=a.passages[:1], image=a.image)
    render_seconds = time.perf_counter() - started
    per_question = seconds / len(answers)
    print(
        json.dumps(
            {
                "questions": len(answers),
                "batches": len(keys),
                "image_kb": round(Path(images[0]).stat().st_size / 1024, 1),
                "ms_per_question": round(per_question * 1000, 3),
                "render_ms_per_question": round(render_seconds / len(answers) * 1000, 3),
                "questions_per_second": round(1 / per_question),
                "infoseek_val_seconds": round(per_question * INFOSEEK_VAL, 1),
                "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
