"""BEM answer equivalence (Bulian et al. 2022) as a PyTorch BERT classifier.

The official E-VQA scorer asks the TF-Hub model `google/answer_equivalence/bem/1` whenever
exact match fails. ragvqa runs the same model family in PyTorch from an HF-format checkpoint
(config.json + model.safetensors + vocab), with the official input layout:

    [CLS] candidate [SEP] reference [SEP] question [SEP]      segment ids 0 / 1 / 2

uncased BERT word pieces, and "equivalent" iff softmax(logits)[1] >= 0.5. Segment id 2 needs
`type_vocab_size >= 3`; a checkpoint without it is refused. The official code pads to 512 and
fails on longer inputs; ragvqa trims the longest segment instead and counts how often.
torch and transformers are imported only here, when a BEM model is actually used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ragvqa.errors import UserError, first_line
from ragvqa.io import read_json

MAX_LENGTH = 512


def _check_config(path: Path) -> None:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError("not an HF-format BEM checkpoint (no config.json)", path=str(path))
    config = read_json(config_file, what="config.json", expect=dict)
    if config.get("model_type") != "bert":
        raise UserError(
            f"BEM must be a BERT classifier, model_type is {config.get('model_type')!r}",
            path=str(config_file),
        )
    if int(config.get("type_vocab_size", 2)) < 3:
        raise UserError(
            "BEM needs type_vocab_size >= 3 (segments 0/1/2 for candidate/reference/question), "
            f"this checkpoint has {config.get('type_vocab_size', 2)}",
            path=str(config_file),
        )
    labels = config.get("id2label") or {}
    if len(labels) not in (0, 2) or int(config.get("num_labels", 2)) != 2:
        raise UserError("BEM must have exactly 2 labels (1 = equivalent)", path=str(config_file))


class BemModel:
    """A BEM classifier loaded from a local directory (or a hub id, when online)."""

    def __init__(self, path: str | Path, *, device: str | None = None, batch_size: int = 64):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        local = Path(path)
        if local.exists():
            _check_config(local)
        self.name = str(path)
        self.batch_size = batch_size
        self.truncated = 0
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(path), use_safetensors=True
            )
        except OSError as exc:
            first = first_line(exc)
            raise UserError(f"cannot load BEM model ({first})", path=str(path)) from None
        if self.model.config.type_vocab_size < 3:
            raise UserError("BEM needs type_vocab_size >= 3", path=str(path))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()

    def build_inputs(self, question: str, reference: str, candidate: str) -> tuple[list, list]:
        """Token ids and segment ids of one (question, reference, candidate), official layout."""
        tok = self.tokenizer
        parts = [
            tok(text, add_special_tokens=False)["input_ids"]
            for text in (candidate, reference, question)
        ]
        budget = MAX_LENGTH - 4
        if sum(map(len, parts)) > budget:
            self.truncated += 1
            while sum(map(len, parts)) > budget:
                longest = max(range(3), key=lambda i: len(parts[i]))
                parts[longest] = parts[longest][:-1]
        ids, segments = [tok.cls_token_id], [0]
        for segment, part in enumerate(parts):
            ids += part + [tok.sep_token_id]
            segments += [segment] * (len(part) + 1)
        return ids, segments

    def probabilities(self, triples: Sequence[tuple[str, str, str]]) -> list[float]:
        """P(equivalent) = softmax(logits)[1] for each (question, reference, candidate)."""
        import torch

        encoded = [self.build_inputs(*t) for t in triples]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        out = [0.0] * len(encoded)
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            segs = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                n = len(encoded[i][0])
                ids[row, :n] = torch.tensor(encoded[i][0])
                segs[row, :n] = torch.tensor(encoded[i][1])
                mask[row, :n] = 1
            with torch.inference_mode():
                logits = self.model(
                    input_ids=ids.to(self.device),
                    token_type_ids=segs.to(self.device),
                    attention_mask=mask.to(self.device),
                ).logits
            probs = torch.softmax(logits.double(), dim=-1)[:, 1].tolist()
            for row, i in enumerate(batch):
                out[i] = probs[row]
        return out
