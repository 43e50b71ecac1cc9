"""Contrastive training of any ReT-family retriever (`ragvqa train retriever`).

In-batch negatives with several positives per entity, a fixed or learned temperature, frozen
or trainable towers, gradient accumulation, AdamW with linear warmup and cosine decay, bf16
autocast on GPU, recall@K on held-out pairs at each evaluation, and checkpoints from which a
killed run resumes exactly (same batches, same dropout draws, same weights). Under `torchrun`
each rank takes its share of every global batch and negatives are gathered across ranks.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ragvqa.errors import UserError
from ragvqa.models.checkpoint import save_retriever
from ragvqa.models.encode import EncodeStats, RetEncoder, load_image
from ragvqa.models.loss import contrastive_loss, late_interaction
from ragvqa.progress import ProgressBar
from ragvqa.train.config import TrainConfig
from ragvqa.train.data import Pair, PairCollator, load_pairs
from ragvqa.train.model import build_model, param_groups
from ragvqa.train.state import resume, save_checkpoint
from ragvqa.types import Passage, VQAQuery

# -- data order -------------------------------------------------------------------------------


def batch_indices(n: int, batch: int, seed: int, micro_step: int, world: int, rank: int) -> list:
    """The pair indices of one rank's micro-batch: a pure function of the step, so resuming at
    any step replays exactly the batches an uninterrupted run would see."""
    global_batch = batch * world
    per_epoch = n // global_batch
    if per_epoch == 0:
        raise UserError(f"{n} training pairs cannot fill one batch of {global_batch}")
    epoch, index = divmod(micro_step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    start = index * global_batch + rank * batch
    return order[start : start + batch].tolist()


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to 1, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# -- evaluation -------------------------------------------------------------------------------


def evaluate(model: Any, processor: Any, pairs: list[Pair], ks: tuple[int, ...]) -> dict:
    """Recall@K (%) of held-out queries against the distinct held-out documents; a document
    is relevant when it belongs to the query's entity."""
    was_training = model.training
    model.eval()
    docs = list(dict.fromkeys((p.document, p.document_image, p.entity_id) for p in pairs))
    encoder = RetEncoder(model, processor, batch_size=64, progress=False)
    queries = encoder.encode_queries(
        [VQAQuery(str(i), p.query, p.query_image) for i, p in enumerate(pairs)]
    )
    documents = encoder.encode_documents(
        [
            Passage(str(j), text, image_paths=(img,) if img else ())
            for j, (text, img, _) in enumerate(docs)
        ]
    )
    model.train(was_training)
    scores = late_interaction(torch.from_numpy(queries), torch.from_numpy(documents))
    ranking = scores.topk(min(max(ks), len(docs)), dim=1).indices.tolist()
    entity = [e for _, _, e in docs]
    out = {}
    for k in ks:
        hits = sum(
            any(entity[j] == p.entity_id for j in ranking[i][:k]) for i, p in enumerate(pairs)
        )
        out[f"recall@{k}"] = round(100.0 * hits / len(pairs), 2)
    out["queries"], out["documents"] = len(pairs), len(docs)
    return out


# -- the loop ---------------------------------------------------------------------------------


class _Distributed:
    """torchrun awareness: rank, world size, and gathering features across ranks."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return tensor
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(tensor), dim=0)

    def gather_labels(self, labels: list) -> list:
        if self.world == 1:
            return labels
        out: list = [None] * self.world
        torch.distributed.all_gather_object(out, labels)
        return [label for part in out for label in part]


class Trainer:
    """One training run: set up once, then `run()` (which resumes from the newest checkpoint)."""

    def __init__(self, cfg: TrainConfig):
        self.cfg, self.dist = cfg, _Distributed()
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.pairs = load_pairs(cfg.train, cfg.image_root)
        self.eval_pairs = load_pairs(cfg.eval, cfg.image_root) if cfg.eval else []
        torch.manual_seed(cfg.seed)
        self.model, self.processor = build_model(cfg)
        cuda = torch.cuda.is_available()
        self.device = cfg.device or (
            f"cuda:{self.dist.rank % torch.cuda.device_count()}" if cuda else "cpu"
        )
        self.model.to(self.device).train()
        self.log_temp = torch.nn.Parameter(
            torch.tensor(math.log(cfg.temperature), device=self.device)
        )
        extra = [self.log_temp] if cfg.learn_temperature else []
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg, extra))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.warmup, cfg.steps)
        )
        self.step = resume(self.out / "checkpoints", self)
        self.forward = self.model
        if self.dist.world > 1:
            self.forward = torch.nn.parallel.DistributedDataParallel(self.model)
        self.stats = EncodeStats()
        self.collate = PairCollator(
            self.processor,
            self.model.config.query_instruction,
            lambda p: load_image(p, self.stats),
            cache_mb=cfg.pixel_cache_mb,
        )
        self.autocast = cfg.precision == "bf16" or (
            cfg.precision == "auto" and str(self.device).startswith("cuda")
        )

    def _micro_batch(self, micro_step: int) -> float:
        cfg, dist = self.cfg, self.dist
        indices = batch_indices(
            len(self.pairs), cfg.batch_size, cfg.seed, micro_step, dist.world, dist.rank
        )
        batch = _to(self.collate([self.pairs[i] for i in indices]), self.device)
        device_type = str(self.device).split(":")[0]
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.autocast):
            q, d = self.forward(batch["query"], batch["document"])
        loss = contrastive_loss(
            dist.gather(q.float()),
            dist.gather(d.float()),
            dist.gather_labels(batch["labels"]),
            self.log_temp.exp(),
        )
        (loss / cfg.grad_accum).backward()
        return loss.item() / cfg.grad_accum

    def train_step(self) -> dict[str, Any]:
        """One optimizer step (grad_accum micro-batches); returns its log record."""
        cfg = self.cfg
        started = time.perf_counter()
        loss = sum(self._micro_batch(self.step * cfg.grad_accum + m) for m in range(cfg.grad_accum))
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        pairs = cfg.batch_size * cfg.grad_accum * self.dist.world
        return {
            "step": self.step,
            "loss": round(loss, 5),
            "pairs_per_s": round(pairs / (time.perf_counter() - started), 1),
            "lr": self.scheduler.get_last_lr()[0],
            "temperature": round(self.log_temp.exp().item(), 5),
        }

    def save(self, record: dict[str, Any]) -> None:
        save_checkpoint(
            self.out / "checkpoints",
            self.step,
            self.model,
            self.processor,
            self.optimizer,
            self.scheduler,
            {"config": asdict(self.cfg), "metrics": record},
            {"log_temperature": self.log_temp.detach()},
            self.cfg.keep_checkpoints,
        )

    def run(self) -> dict[str, Any]:
        """Train to `steps` (or `stop_after`); returns the last log record."""
        cfg, main = self.cfg, self.dist.main
        record: dict[str, Any] = {"step": self.step}
        shown = cfg.progress and main
        with ProgressBar("training", cfg.steps, enabled=shown, completed=self.step) as bar:
            while self.step < cfg.steps:
                record = self.train_step()
                last = self.step == cfg.steps
                if main and self.eval_pairs and (self.step % cfg.eval_every == 0 or last):
                    record["eval"] = evaluate(
                        self.model, self.processor, self.eval_pairs, cfg.eval_ks
                    )
                if main:
                    with (self.out / "metrics.jsonl").open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps(record) + "\n")
                bar.update(completed=self.step, info=_progress_info(record))
                stopping = cfg.stop_after is not None and self.step >= cfg.stop_after
                if main and (self.step % cfg.save_every == 0 or last or stopping):
                    self.save(record)
                if stopping:
                    break
        if main and self.step >= cfg.steps:
            save_retriever(self.model, self.out / "final", self.processor)
        record["images"] = {
            "missing": self.stats.missing_images,
            "unreadable": self.stats.unreadable_images,
        }
        return record


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns the last log record."""
    trainer = Trainer(cfg)
    try:
        return trainer.run()
    finally:
        if trainer.dist.world > 1:
            torch.distributed.destroy_process_group()


def _to(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {
        side: {k: v.to(device) for k, v in batch[side].items()} if side != "labels" else batch[side]
        for side in batch
    }


def _progress_info(record: dict[str, Any]) -> str:
    """The text after the progress bar: loss, throughput and the last recall@1."""
    info = f"loss {record['loss']:.4f}  {record['pairs_per_s']} pairs/s"
    if "eval" in record:
        info += f"  R@1 {record['eval'].get('recall@1')}"
    return info
