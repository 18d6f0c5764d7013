"""Multi-head attention with optional RoPE and optional memory tokens (extra keys/values).

Weight layout follows CUT3R/CroCo so encoder checkpoints load unchanged: one ``qkv`` Linear
whose output rows are ``[q | k | v]`` (``dim`` rows each; head ``h`` owns rows
``h*head_dim:(h+1)*head_dim`` inside each part), then ``proj``. The softmax scale is
``head_dim ** -0.5`` (the default of :func:`torch.nn.functional.scaled_dot_product_attention`).

Memory tokens (Mem4D's TDM / PSM readout, paper Alg. 1) only add keys and values: queries
come from ``x`` alone, so no output is computed for the memory. Their keys and values use
the same ``qkv`` weights (only the k and v rows are evaluated for them), and RoPE is applied
to their keys with ``mem_pos``. This equals running self-attention over ``concat(x, mem)``
and keeping the rows of ``x``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mem4d.layers.rope import RotaryEmbedding

__all__ = ["Attention"]


class Attention(nn.Module):
    """Multi-head (self + memory) attention.

    Args:
        dim: token width C.
        num_heads: number of heads; ``dim`` must be divisible by it.
        qkv_bias: bias on the ``qkv`` projection (CroCo hard-codes True).
        rope: rotary embedding applied to queries and keys, or None for no position encoding.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, rope: RotaryEmbedding | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        if rope is not None and rope.head_dim != self.head_dim:
            raise ValueError(f"rope.head_dim={rope.head_dim} != dim/num_heads={self.head_dim}")
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def _heads(self, t: Tensor, parts: int) -> Tensor:
        # (B, N, parts*C) -> (parts, B, heads, N, head_dim)
        b, n, _ = t.shape
        return t.reshape(b, n, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)

    def forward(
        self,
        x: Tensor,
        pos: Tensor | None = None,
        mem: Tensor | None = None,
        mem_pos: Tensor | None = None,
    ) -> Tensor:
        """Attend from ``x`` to ``x`` (and ``mem``).

        Args:
            x: ``(B, N, C)`` query tokens.
            pos: ``(B, N, A)`` positions of ``x`` (needed when the layer has RoPE).
            mem: ``(B, M, C)`` memory tokens used only as extra keys/values; ``M`` may be 0.
            mem_pos: ``(B, M, A)`` positions of ``mem`` (needed with RoPE and ``mem``).

        Returns:
            ``(B, N, C)``.
        """
        if self.rope is not None and pos is None:
            raise ValueError("this attention layer uses RoPE: pass pos (B, N, num_axes)")
        q, k, v = self._heads(self.qkv(x), 3).unbind(0)  # each (B, heads, N, hd)
        if self.rope is not None:
            q = self.rope(q, pos)
            k = self.rope(k, pos)
        if mem is not None:
            if mem.dim() != 3 or mem.shape[0] != x.shape[0] or mem.shape[2] != x.shape[2]:
                raise ValueError(f"mem must be (B={x.shape[0]}, M, C={x.shape[2]}), got {tuple(mem.shape)}")
            if self.rope is not None and mem_pos is None:
                raise ValueError("this attention layer uses RoPE: pass mem_pos (B, M, num_axes) with mem")
            bias = None if self.qkv.bias is None else self.qkv.bias[self.dim :]
            mk, mv = self._heads(F.linear(mem, self.qkv.weight[self.dim :], bias), 2).unbind(0)
            if self.rope is not None:
                mk = self.rope(mk, mem_pos)
            k = torch.cat([k, mk], dim=2)
            v = torch.cat([v, mv], dim=2)
        out = F.scaled_dot_product_attention(q, k, v)  # scale = head_dim ** -0.5
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.dim)
        return self.proj(out)

