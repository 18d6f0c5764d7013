"""Pre-norm transformer block with optional memory tokens.

    x = x + attn(norm1(x), pos, norm_mem(mem), mem_pos)
    x = x + mlp(norm2(x))

Submodule names follow CUT3R/CroCo (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
``mlp.fc1``, ``mlp.fc2``) so an encoder block loads CUT3R weights strictly. ``norm_mem`` is an
extra LayerNorm for memory tokens (Mem4D's read blocks); with ``use_mem_norm=False`` it is
not created and memory tokens share ``norm1``, which makes the block equal to a plain
self-attention block over ``concat(x, mem)`` restricted to the rows of ``x``.

No in-place ops, so ``torch.utils.checkpoint.checkpoint(block, x, pos, ...)`` works from outside.
"""

from __future__ import annotations

from torch import Tensor, nn

from mem4d.layers.attention import Attention
from mem4d.layers.mlp import Mlp
from mem4d.layers.rope import RotaryEmbedding

__all__ = ["Block"]


class Block(nn.Module):
    """Pre-norm attention + MLP block.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / ``dim``.
        qkv_bias: bias on the qkv projection.
        rope: rotary embedding (shared across blocks is fine: it has no parameters).
        norm_eps: LayerNorm eps (CroCo/CUT3R: 1e-6).
        use_mem_norm: create a separate LayerNorm ``norm_mem`` for memory tokens.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        rope: RotaryEmbedding | None = None,
        norm_eps: float = 1e-6,
        use_mem_norm: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, rope=rope)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_mem = nn.LayerNorm(dim, eps=norm_eps) if use_mem_norm else None

    def forward(
        self,
        x: Tensor,
        pos: Tensor | None = None,
        mem: Tensor | None = None,
        mem_pos: Tensor | None = None,
    ) -> Tensor:
        """``x (B, N, C)``, ``pos (B, N, A)``, ``mem (B, M, C)``, ``mem_pos (B, M, A)`` -> ``(B, N, C)``."""
        if mem is not None:
            mem = (self.norm_mem if self.norm_mem is not None else self.norm1)(mem)
        x = x + self.attn(self.norm1(x), pos, mem, mem_pos)
        return x + self.mlp(self.norm2(x))
