"""Contrastive training loss for the ReT family.

Scores are late interaction (ColBERT MaxSim): s(q, d) = sum_i max_j <q_i, d_j>, which for one
vector per side is the plain dot product. The loss is InfoNCE over in-batch negatives, with
several positives when the same entity appears more than once in a batch (every document of the
query's entity counts as a positive), in both directions (query -> documents and document ->
queries), at a temperature that is fixed or learned.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch


def late_interaction(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Score matrix [Nq, Nd] of queries [Nq, n, d] against documents [Nd, m, d]."""
    if queries.shape[1] == 1 and documents.shape[1] == 1:
        return queries[:, 0] @ documents[:, 0].T
    sim = torch.einsum("qnd,pmd->qpnm", queries, documents)
    return sim.max(dim=-1).values.sum(dim=-1)


def positive_mask(labels: Sequence[Hashable] | None, n: int, device: torch.device) -> torch.Tensor:
    """[n, n] booleans: pair (i, j) is positive when labels match (the diagonal without labels)."""
    if labels is None:
        return torch.eye(n, dtype=torch.bool, device=device)
    ids = {label: k for k, label in enumerate(dict.fromkeys(labels))}
    codes = torch.tensor([ids[label] for label in labels], device=device)
    return codes[:, None] == codes[None, :]


def _multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """-log( sum over positives of softmax ), averaged over rows."""
    log_all = torch.logsumexp(logits, dim=1)
    log_pos = torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=1)
    return (log_all - log_pos).mean()


def contrastive_loss(
    queries: torch.Tensor,
    documents: torch.Tensor,
    labels: Sequence[Hashable] | None = None,
    temperature: torch.Tensor | float = 0.05,
    symmetric: bool = True,
) -> torch.Tensor:
    """Multi-positive InfoNCE of L2-normalised query and document vectors (row i pairs with i).

    Args:
        queries, documents: [B, n, d] and [B, m, d] (the document of row i is the positive of
            query i; documents of other rows are negatives unless they share its label).
        labels: Entity ids per row; equal labels are positives of each other.
        temperature: Softmax temperature (a tensor when learned).
        symmetric: Add the document -> query direction.
    """
    scores = late_interaction(queries, documents) / temperature
    positives = positive_mask(labels, scores.shape[0], scores.device)
    loss = _multi_positive_nce(scores, positives)
    if symmetric:
        loss = (loss + _multi_positive_nce(scores.T, positives.T)) / 2
    return loss
