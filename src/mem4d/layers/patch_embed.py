"""Patch embedding: non-overlapping ``p x p`` patches -> tokens, row-major.

A ``Conv2d(in_chans, dim, kernel=stride=p)`` with bias and no padding, named ``proj`` so
CUT3R's ``patch_embed.proj.{weight,bias}`` load unchanged. The ``(B, dim, h, w)`` output is
flattened row-major: token ``n = row * w + col`` (the order of
:func:`mem4d.layers.rope.grid_positions`).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PatchEmbed"]


class PatchEmbed(nn.Module):
    """``(B, C, H, W) -> (B, (H/p)*(W/p), dim)``.

    Args:
        patch_size: patch side ``p`` in pixels.
        in_chans: input channels (3 for RGB, e.g. 3 for a pointmap too).
        dim: token width.
    """

    def __init__(self, patch_size: int = 16, in_chans: int = 3, dim: int = 1024) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.dim = dim
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Token grid ``(h, w)`` of an image of ``height x width`` pixels (validated)."""
        p = self.patch_size
        if height % p or width % p or height <= 0 or width <= 0:
            raise ValueError(
                f"image size {height}x{width} (HxW) is not a multiple of the patch size {p}: "
                f"resize or crop the images to multiples of {p} "
                f"(e.g. {max(p, height // p * p)}x{max(p, width // p * p)})"
            )
        return height // p, width // p

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"PatchEmbed expects (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        self.grid_size(x.shape[-2], x.shape[-1])
        return self.proj(x).flatten(2).transpose(1, 2)
