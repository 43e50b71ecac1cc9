"""A synthetic retrieval task: 32 entities, each a coloured shape, described in words.

Queries are renderings of an entity (the shape near the centre of a white 32x32 canvas, at a
random size and offset) with a fixed question; documents are the entity's description
("red circle") without an image. Held-out queries are fresh renderings, so a model has to
learn colour and shape.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from ragvqa.fixtures.world import COLOURS

SHAPES = ("circle", "square", "triangle", "cross")
ENTITIES = [(c, s) for c in COLOURS for s in SHAPES]


def render(colour: str, shape: str, rng: random.Random) -> Image.Image:
    img = Image.new("RGB", (32, 32), "white")
    draw = ImageDraw.Draw(img)
    r = rng.randint(8, 11)
    cx, cy = 16 + rng.randint(-2, 2), 16 + rng.randint(-2, 2)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:
        w = max(2, r // 3)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    return img


def write_task(folder: Path, train_per_entity: int = 8, eval_per_entity: int = 2, seed: int = 0):
    """Write images and train.jsonl / eval.jsonl; returns their paths."""
    rng = random.Random(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    files = {}
    for split, count in (("train", train_per_entity), ("eval", eval_per_entity)):
        lines = []
        for k, (colour, shape) in enumerate(ENTITIES):
            for j in range(count):
                name = f"img/{split}_{k}_{j}.png"
                render(colour, shape, rng).save(folder / name)
                lines.append(
                    {
                        "query": "what is it?",
                        "query_image": name,
                        "document": f"{colour} {shape}",
                        "entity_id": f"E{k}",
                    }
                )
        rng.shuffle(lines)
        files[split] = folder / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(x) + "\n" for x in lines))
    return files["train"], files["eval"]
