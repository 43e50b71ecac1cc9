"""Training checkpoints in safetensors + JSON (no pickles): model, optimizer, scheduler, RNG.

A checkpoint is a folder `step-NNNNNNN/` written under a temporary name and renamed into place,
so a run killed while saving leaves the previous checkpoint intact. Saving a step that has a
checkpoint already (the last step again at the end of a run) moves the old folder aside to
`step-NNNNNNN.old/` first, a name that still counts as a checkpoint, and removes it only once
the new one is in place: at every moment a complete checkpoint is on disk.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ragvqa.errors import UserError
from ragvqa.io import read_json, write_json
from ragvqa.models.checkpoint import read_weights, save_retriever, with_shared_head
from ragvqa.train.config import RESUMABLE_CHANGES

OPTIMIZER = "optimizer.safetensors"
STATE = "trainer_state.json"
OLD = ".old"  # suffix of a checkpoint moved aside while its step is saved again


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """Flatten an optimizer state into named tensors plus its (JSON-able) param groups."""
    sd = optimizer.state_dict()
    tensors = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state.{index}.{key}"] = tensor.detach().cpu().contiguous()
    return tensors, sd["param_groups"]


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    folder: Path,
    step: int,
    model: Any,
    processor: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    extra: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor],
    keep: int,
) -> Path:
    """Write `folder/step-<step>/` atomically and keep only the newest `keep` checkpoints."""
    from safetensors.torch import save_file

    final = folder / f"step-{step:07d}"
    tmp = folder / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_retriever(model, tmp, processor)
    tensors, groups = optimizer_tensors(optimizer)
    tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in extra_tensors.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    save_file(tensors, str(tmp / OPTIMIZER))
    sched = scheduler.state_dict()
    sched["lr_lambdas"] = [None] * len(sched.get("lr_lambdas", []))  # functions are code, not state
    document = {"step": step, "param_groups": groups, "scheduler": sched, **extra}
    write_json(tmp / STATE, document)
    _put_in_place(tmp, final)
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _put_in_place(tmp: Path, final: Path) -> None:
    """Rename the complete checkpoint `tmp` to `final`. A checkpoint already at `final` is
    moved aside to `<final>.old` (still a checkpoint to `list_checkpoints`) and removed after
    the rename, so a kill at any point leaves one complete checkpoint of the step."""
    aside = final.with_name(final.name + OLD)
    if final.exists():
        shutil.rmtree(aside, ignore_errors=True)  # a killed save's: `final` is complete
        final.rename(aside)
    tmp.rename(final)
    shutil.rmtree(aside, ignore_errors=True)


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first (one moved aside by a save of its step that was
    killed, `step-N.old`, just before `step-N`)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("step-*") if (p / STATE).is_file()]
    return sorted(found, key=lambda p: (p.name.removesuffix(OLD), not p.name.endswith(OLD)))


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(trainer_state.json, optimizer/RNG tensors) of one checkpoint."""
    from safetensors.torch import load_file

    state = read_json(path / STATE, what="training checkpoint state", expect=dict)
    try:
        return state, load_file(path / OPTIMIZER)
    except Exception as exc:
        raise UserError(f"cannot read training checkpoint ({exc})", path=str(path)) from None


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def resume(folder: Path, trainer: Any) -> int:
    """Restore the newest checkpoint under `folder` into a `Trainer` (model, optimizer,
    scheduler, temperature, RNG), if there is one; returns the step to start from. A checkpoint
    written with other settings (beyond `RESUMABLE_CHANGES`) is refused."""
    model, optimizer, cfg = trainer.model, trainer.optimizer, trainer.cfg
    checkpoints = list_checkpoints(folder)
    if not checkpoints:
        return 0
    latest = checkpoints[-1]
    state, tensors = load_checkpoint(latest)
    saved = {k: v for k, v in state["config"].items() if k not in RESUMABLE_CHANGES}
    now = {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES}
    saved["eval_ks"] = tuple(saved["eval_ks"])
    changed = sorted(k for k in now if now[k] != saved.get(k))
    if changed:
        raise UserError(
            f"{latest} was written with other settings ({', '.join(changed[:5])}); "
            "use a new --out folder or the same settings"
        )
    model.load_state_dict(with_shared_head(read_weights(latest), model.config), strict=True)
    restore_optimizer(optimizer, tensors, state["param_groups"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    with torch.no_grad():
        trainer.log_temp.copy_(tensors["extra.log_temperature"])
    restore_rng(tensors)
    return int(state["step"])
