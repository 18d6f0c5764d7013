"""Image encoder: CUT3R's ViT (patch 16, 2D RoPE base 100, pre-norm blocks, final LayerNorm).

The module tree mirrors CUT3R's state-dict names, so the encoder part of a CUT3R checkpoint
loads with ``strict=True`` (see :func:`mem4d.model.weights.load_encoder_weights`):

    patch_embed.proj.{weight,bias}              Conv2d(3, width, 16, stride 16)
    enc_blocks.{i}.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2
    enc_norm.{weight,bias}                      LayerNorm(width, eps=1e-6)

There is no cls token, no absolute position embedding and no buffer. Conventions pinned by
``tests/model/test_encoder.py`` against CUT3R's own output: row-major tokens, RoPE positions
``(y, x)`` = integer patch (row, col), RoPE channels ``[y half | x half]`` with half-split
pairing, attention scale ``head_dim ** -0.5``, exact GELU, LayerNorm eps 1e-6.

Unlike CUT3R, q and k are not rounded to float16 before RoPE (CUT3R always does): this module
matches CUT3R's float32 numerics (``output.npy`` of the parity fixture) to < 5e-5, and its
fp16-rounded output to ~2e-3. On Ampere+ GPUs disable TF32 for a bit-faithful comparison.

Example:
    >>> enc = ImageEncoder(width=128, depth=2, num_heads=2)
    >>> enc(torch.rand(1, 3, 64, 96)).shape                 # images in [0, 1]
    torch.Size([1, 24, 128])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mem4d.layers.block import Block
from mem4d.layers.patch_embed import PatchEmbed
from mem4d.layers.rope import RotaryEmbedding, grid_positions

__all__ = ["ImageEncoder"]


class ImageEncoder(nn.Module):
    """ViT encoder with CUT3R's weight layout.

    Args:
        width: token width (1024 for CUT3R's ViT-L).
        depth: number of blocks (24 for ViT-L).
        num_heads: attention heads (16 for ViT-L; head dim 64).
        patch_size: patch side in pixels.
        mlp_ratio: MLP hidden width / width.
        rope_base: 2D RoPE frequency base (CUT3R: 100).
    """

    def __init__(
        self,
        width: int,
        depth: int,
        num_heads: int,
        patch_size: int = 16,
        mlp_ratio: float = 4.0,
        rope_base: float = 100.0,
    ) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width={width} must be divisible by num_heads={num_heads}")
        self.width = width
        self.depth = depth
        self.num_heads = num_heads
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=3, dim=width)
        # One parameter-free RoPE shared by every block, as in CUT3R.
        self.rope = RotaryEmbedding(width // num_heads, num_axes=2, base=rope_base)
        self.enc_blocks = nn.ModuleList(
            Block(width, num_heads, mlp_ratio, qkv_bias=True, rope=self.rope, norm_eps=1e-6, use_mem_norm=False)
            for _ in range(depth)
        )
        self.enc_norm = nn.LayerNorm(width, eps=1e-6)

    @property
    def patch_size(self) -> int:
        return self.patch_embed.patch_size

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Token grid ``(h, w)`` for images of ``height x width`` pixels (multiples of the patch size)."""
        return self.patch_embed.grid_size(height, width)

    def positions(self, height: int, width: int, device: torch.device | str | None = None) -> Tensor:
        """RoPE positions of the tokens of a ``height x width``-pixel image: ``(N, 2)`` int64, columns (y, x).

        ``height``/``width`` are in **pixels**; for a token grid use
        :func:`mem4d.layers.rope.grid_positions` directly.
        """
        return grid_positions(*self.grid_size(height, width), device=device)

    def forward(self, images: Tensor) -> Tensor:
        """Encode images.

        Args:
            images: ``(B, 3, H, W)`` RGB in [0, 1]; H and W multiples of the patch size.

        Returns:
            tokens ``(B, N, width)``, ``N = (H/p)*(W/p)``, row-major.
        """
        # CUT3R's ToTensor + Normalize(mean=0.5, std=0.5).
        return self.forward_normalized((images - 0.5) / 0.5)

    def forward_normalized(self, x: Tensor) -> Tensor:
        """Like :meth:`forward` but for images already normalised to [-1, 1] (CUT3R's ``img``)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"ImageEncoder expects images (B, 3, H, W), got {tuple(x.shape)}")
        pos = self.positions(x.shape[-2], x.shape[-1], device=x.device).unsqueeze(0).expand(x.shape[0], -1, -1)
        tokens = self.patch_embed(x)
        for block in self.enc_blocks:
            tokens = block(tokens, pos)
        return self.enc_norm(tokens)
