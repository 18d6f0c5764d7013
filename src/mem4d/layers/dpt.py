"""DPT head (Ranftl et al. 2021): four token maps -> a dense full-resolution prediction.

Layout (one generic class; Mem4D builds two, for the global and the self-view pointmap):

1. *Reassemble*: each token map (B, N, C_i) on the h x w patch grid becomes an image,
   a 1x1 conv to ``layer_dims[i]``, then a resampling to 4x, 2x, 1x and 1/2x the patch
   grid (transposed convs up, a stride-2 conv down), then a 3x3 conv to ``features``.
2. *Fusion*: RefineNet-style blocks from the coarsest map to the finest; each adds the
   (residual-conv-refined) skip map, refines once more, upsamples to the next map's size
   and mixes with a 1x1 conv. The last block upsamples x2 (to 1/2 of the image).
3. *Output*: 3x3 conv to ``features/2``, bilinear upsampling to the image size, 3x3 conv to
   ``hidden``, ReLU, 1x1 conv to ``out_channels``. No activation on the output. With
   ``full_res=False`` the last two convs run at 1/2 resolution and the ``out_channels`` maps
   are upsampled instead (same parameters; the full-resolution work, ~35 % of a narrow head
   on CPU, shrinks to one 4-channel interpolation).

Odd grid sizes are fine: every upsampling targets the exact size of the next map. Maps are
kept channels-last (NHWC) in memory: tokens (B, N, C) already are, and oneDNN's convs and
bilinear upsampling on the narrow full-resolution maps run ~3x faster that way.

Example:
    >>> head = DPTHead(in_dims=(32, 24, 24, 24), out_channels=4, features=16, layer_dims=(8, 8, 16, 16), hidden=8)
    >>> toks = [torch.randn(2, 12, c) for c in (32, 24, 24, 24)]     # grid 3 x 4
    >>> head(toks, (3, 4)).shape
    torch.Size([2, 4, 48, 64])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DPTHead"]


class _ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))) with 3x3 convs."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class _FusionBlock(nn.Module):
    """(path, skip) -> refined path upsampled to ``size``."""

    def __init__(self, features: int, has_skip: bool) -> None:
        super().__init__()
        self.skip_unit = _ResidualConvUnit(features) if has_skip else None
        self.unit = _ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: Tensor, skip: Tensor | None, size: tuple[int, int]) -> Tensor:
        if skip is not None:
            assert self.skip_unit is not None
            x = x + self.skip_unit(skip)
        x = self.unit(x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """Dense prediction head over four token maps.

    Args:
        in_dims: widths of the four token maps (finest first: encoder, then decoder stages).
        out_channels: predicted channels per pixel.
        features: width of the fusion path.
        layer_dims: widths after reassembly, one per map.
        hidden: width of the last full-resolution conv.
        patch_size: pixels per token side.
        full_res: run the last convs at full resolution (standard DPT) or at 1/2 (cheaper).
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        out_channels: int,
        features: int = 256,
        layer_dims: Sequence[int] = (96, 192, 384, 768),
        hidden: int = 128,
        patch_size: int = 16,
        full_res: bool = True,
    ) -> None:
        super().__init__()
        if len(in_dims) != 4 or len(layer_dims) != 4:
            raise ValueError(f"DPTHead needs 4 in_dims and 4 layer_dims, got {tuple(in_dims)} / {tuple(layer_dims)}")
        self.patch_size = patch_size
        self.full_res = full_res
        self.project = nn.ModuleList(nn.Conv2d(c, d, 1) for c, d in zip(in_dims, layer_dims))
        d0, d1, d2, d3 = layer_dims
        self.resample = nn.ModuleList([
            nn.ConvTranspose2d(d0, d0, kernel_size=4, stride=4),
            nn.ConvTranspose2d(d1, d1, kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(d3, d3, kernel_size=3, stride=2, padding=1),
        ])
        self.to_features = nn.ModuleList(nn.Conv2d(d, features, 3, padding=1, bias=False) for d in layer_dims)
        self.fusion = nn.ModuleList(_FusionBlock(features, has_skip=i < 3) for i in range(4))  # fusion[3] is coarsest
        self.out_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.out_conv2 = nn.Conv2d(features // 2, hidden, 3, padding=1)
        self.out_conv3 = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, tokens: Sequence[Tensor], grid: tuple[int, int]) -> Tensor:
        """``tokens``: four (B, N, C_i) maps on the ``grid`` (h, w) -> (B, out_channels, h*p, w*p)."""
        h, w = grid
        maps = []
        for i, t in enumerate(tokens):
            # channels-last: ~3x faster convs / upsampling for the narrow full-resolution maps on CPU
            x = t.reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)
            x = self.resample[i](self.project[i](x))
            maps.append(self.to_features[i](x))
        path = self.fusion[3](maps[3], None, maps[2].shape[-2:])
        path = self.fusion[2](path, maps[2], maps[1].shape[-2:])
        path = self.fusion[1](path, maps[1], maps[0].shape[-2:])
        path = self.fusion[0](path, maps[0], (2 * maps[0].shape[-2], 2 * maps[0].shape[-1]))
        out = self.out_conv1(path)
        size = (h * self.patch_size, w * self.patch_size)
        if not self.full_res:
            out = self.out_conv3(F.relu(self.out_conv2(out)))
            return F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return self.out_conv3(F.relu(self.out_conv2(out)))
