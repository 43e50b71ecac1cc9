"""`ragvqa train retriever`: contrastive training of a ReT-family retriever.

Prints the last log record (step, loss, held-out recall@K) as JSON on stdout; progress with
loss and throughput goes to stderr. Running the same command again resumes from the newest
checkpoint under --out. The run holds --out's lock (`ragvqa.run.lock`): a second process on the
same folder is refused at once, naming the holder.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import typer

from ragvqa.cli.common import print_json, user_errors

app = typer.Typer(help="Train models.", no_args_is_help=True)


@app.command("retriever")
def retriever(
    train: Path = typer.Option(
        ..., "--train", help="Pairs JSONL (query, document, images, entity_id)."
    ),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, metrics.jsonl, final/."),
    eval: Path | None = typer.Option(None, "--eval", help="Held-out pairs JSONL for recall@K."),
    preset: str | None = typer.Option(
        None, "--preset", help="Start from a preset (e.g. ret2-vit-b32)."
    ),
    init: str | None = typer.Option(
        None, "--init", help="Start from a checkpoint (folder or hub id)."
    ),
    towers: str | None = typer.Option(
        None,
        "--towers",
        help="Pretrained CLIP for a preset's towers (default: the preset's); 'random'.",
    ),
    image_root: Path | None = typer.Option(
        None, "--image-root", help="Base of relative image paths."
    ),
    batch_size: int = typer.Option(32, "--batch-size", help="Pairs per batch (per GPU)."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per optimizer step."),
    steps: int = typer.Option(1000, "--steps", help="Optimizer steps."),
    warmup: int = typer.Option(100, "--warmup", help="Linear warmup steps (then cosine decay)."),
    lr: float = typer.Option(1e-4, "--lr", help="Learning rate of the heads."),
    tower_lr: float = typer.Option(1e-5, "--tower-lr", help="Learning rate of trainable towers."),
    temperature: float = typer.Option(0.05, "--temperature", help="Softmax temperature."),
    learn_temperature: bool = typer.Option(False, "--learn-temperature", help="Learn it too."),
    train_text_tower: bool = typer.Option(False, "--train-text-tower", help="Unfreeze text tower."),
    train_vision_tower: bool = typer.Option(False, "--train-vision-tower", help="Unfreeze vision."),
    eval_every: int = typer.Option(200, "--eval-every", help="Steps between evaluations."),
    save_every: int = typer.Option(200, "--save-every", help="Steps between checkpoints."),
    seed: int = typer.Option(0, "--seed"),
    device: str | None = typer.Option(None, "--device", help="Default: CUDA when available."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on GPU) | fp32 | bf16."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Contrastive training with in-batch negatives; resumes from the newest checkpoint."""
    with user_errors():
        from ragvqa.run.lock import locked_folder
        from ragvqa.train.trainer import TrainConfig
        from ragvqa.train.trainer import train as run

        config = TrainConfig(
            train=str(train),
            out=str(out),
            eval=str(eval) if eval else None,
            preset=preset,
            init=init,
            towers=towers,
            image_root=str(image_root) if image_root else None,
            batch_size=batch_size,
            grad_accum=grad_accum,
            steps=steps,
            warmup=warmup,
            lr=lr,
            tower_lr=tower_lr,
            temperature=temperature,
            learn_temperature=learn_temperature,
            train_text_tower=train_text_tower,
            train_vision_tower=train_vision_tower,
            eval_every=eval_every,
            save_every=save_every,
            seed=seed,
            device=device,
            precision=precision,
            progress=progress,
        )
        # one run per --out: a second process on it is refused, naming the holder; under
        # torchrun the ranks of one job share it, so rank 0 holds it for them
        first = os.environ.get("RANK", "0").strip() in ("", "0")
        with locked_folder(out) if first else contextlib.nullcontext():
            record = run(config)
        print_json(record)
