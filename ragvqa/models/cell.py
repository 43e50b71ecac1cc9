"""The ReT recurrent cell: one gated step that updates the latent tokens from one text layer
and one vision layer.

Parameter names and shapes follow the official checkpoints exactly (`sa`, `text_xa`,
`vision_xa` as `in_proj_weight` / `in_proj_bias` / `out_proj`; `mlp.0` / `mlp.3`; four gate
projections; five LayerNorms of which `sa_ln` is unused, as in the original). Attention runs
through PyTorch's fused `scaled_dot_product_attention`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ragvqa.models.config import HeadConfig


class Attention(nn.Module):
    """Multi-head attention with nn.MultiheadAttention's parameter layout, computed with SDPA."""

    def __init__(self, dim: int, num_heads: int, dropout: float, bias: bool):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim)) if bias else None
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _project(self, x: torch.Tensor, part: slice) -> torch.Tensor:
        bias = self.in_proj_bias[part] if self.in_proj_bias is not None else None
        return F.linear(x, self.in_proj_weight[part], bias)

    def forward(
        self, query: torch.Tensor, memory: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend from `query` [B, Q, H] to `memory` [B, T, H]; `keep` [B, T] masks padding."""
        dim = query.shape[-1]
        q = self._project(query, slice(0, dim))
        k, v = self._project(memory, slice(dim, 3 * dim)).chunk(2, dim=-1)
        b, n_q, n_k, h = query.shape[0], query.shape[1], memory.shape[1], self.num_heads
        q = q.view(b, n_q, h, -1).transpose(1, 2)
        k = k.view(b, n_k, h, -1).transpose(1, 2)
        v = v.view(b, n_k, h, -1).transpose(1, 2)
        mask = keep[:, None, None, :].bool() if keep is not None else None
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, n_q, dim))


def sinusoidal_codes(num_queries: int, dim: int) -> torch.Tensor:
    """The fixed code [1, num_queries, dim] added to the state at every step (sin even, cos odd)."""
    position = torch.arange(num_queries, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(1, num_queries, dim)
    codes[..., 0::2] = torch.sin(position * div_term)
    codes[..., 1::2] = torch.cos(position * div_term)
    return codes


class RetCell(nn.Module):
    """One recurrent step: self-attention and two cross-attentions in parallel, LSTM-like
    input/forget gates per modality, then an MLP block."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        dim, heads, drop = config.hidden_size, config.num_heads, config.attention_dropout
        self.query_hidden_states = nn.Parameter(torch.randn(1, config.num_queries, dim) * 0.2)
        self.register_buffer("query_state_ids", sinusoidal_codes(config.num_queries, dim))
        self.sa = Attention(dim, heads, drop, bias=True)
        self.text_xa = Attention(dim, heads, drop, bias=False)
        self.vision_xa = Attention(dim, heads, drop, bias=False)
        act = nn.GELU if config.activation == "gelu" else nn.ReLU
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim),
            nn.Dropout(config.dropout),
            act(),
            nn.Linear(4 * dim, dim),
            nn.Dropout(config.dropout),
        )
        self.text_input_gate_w = nn.Linear(dim, dim)
        self.vision_input_gate_w = nn.Linear(dim, dim)
        self.text_forget_gate_w = nn.Linear(dim, dim)
        self.vision_forget_gate_w = nn.Linear(dim, dim)
        self.xa_ln = nn.LayerNorm(dim)
        self.text_ln = nn.LayerNorm(dim)
        self.vision_ln = nn.LayerNorm(dim)
        self.sa_ln = nn.LayerNorm(dim)  # present in official checkpoints, never used
        self.sa_ln.requires_grad_(False)  # so it is not trained (nor reported unused by DDP)
        self.mlp_ln = nn.LayerNorm(dim)
        self.register_buffer("input_gate_bias_prior", torch.tensor(config.input_gate_bias_prior))
        self.register_buffer("forget_gate_bias_prior", torch.tensor(config.forget_gate_bias_prior))
        self.state_act = nn.Tanh() if config.use_tanh else nn.Identity()

    def forward(
        self,
        state: torch.Tensor | None,
        text: torch.Tensor,
        text_keep: torch.Tensor | None,
        vision: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next state [B, Q, H] from the previous one (None: the learned initial state)."""
        if state is None:
            state = self.query_hidden_states.expand(text.shape[0], -1, -1)
        x = state + self.query_state_ids
        z = self.xa_ln(x)
        residual = x + self.sa(z, z)
        h_text = self.text_xa(z, self.text_ln(text), text_keep)
        h_vision = self.vision_xa(z, self.vision_ln(vision))
        in_text = torch.sigmoid(self.text_input_gate_w(h_text) + self.input_gate_bias_prior)
        in_vision = torch.sigmoid(self.vision_input_gate_w(h_vision) + self.input_gate_bias_prior)
        forget_text = self.text_forget_gate_w(h_text)
        forget_vision = self.vision_forget_gate_w(h_vision)
        if text_mask is not None:
            m = text_mask[:, None, None].to(h_text.dtype)
            in_text, forget_text = in_text * m, forget_text * m
        if image_mask is not None:
            m = image_mask[:, None, None].to(h_vision.dtype)
            in_vision, forget_vision = in_vision * m, forget_vision * m
        forget = torch.sigmoid(forget_text + forget_vision + self.forget_gate_bias_prior)
        fused = (
            self.state_act(residual) * forget
            + self.state_act(h_text) * in_text
            + self.state_act(h_vision) * in_vision
        )
        return fused + self.mlp(self.mlp_ln(fused))
