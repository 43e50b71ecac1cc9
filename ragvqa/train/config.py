"""The settings of a training run (`ragvqa train retriever`), saved with every checkpoint.

No torch here: the CLI builds a `TrainConfig` before anything heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved with every checkpoint)."""

    train: str
    out: str
    eval: str | None = None
    preset: str | None = None
    init: str | None = None
    towers: str | None = None
    image_root: str | None = None
    batch_size: int = 32
    grad_accum: int = 1
    steps: int = 1000
    warmup: int = 100
    lr: float = 1e-4
    tower_lr: float = 1e-5
    weight_decay: float = 0.01
    temperature: float = 0.05
    learn_temperature: bool = False
    train_text_tower: bool = False
    train_vision_tower: bool = False
    eval_every: int = 200
    save_every: int = 200
    keep_checkpoints: int = 2
    eval_ks: tuple[int, ...] = (1, 5, 10)
    seed: int = 0
    device: str | None = None
    precision: str = "auto"
    stop_after: int | None = None
    progress: bool = True
    # memory for preprocessed image tensors kept between epochs (see PairCollator)
    pixel_cache_mb: int = 512


# settings that may differ when a run is resumed: they do not change what is learned
RESUMABLE_CHANGES = (
    "stop_after",
    "progress",
    "device",
    "eval_every",
    "save_every",
    "keep_checkpoints",
    "pixel_cache_mb",
)
