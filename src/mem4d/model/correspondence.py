"""Correspondence head (``heads.camera_pose == "procrustes"``) [not in the paper].

Why it exists: measured on the CPU-trained tiny model (`bench/diagnose_camera.py`,
docs/RESULTS.md), the TDM's correlation of 16-pixel tokens carries almost no linear
information about frame-to-frame camera motion (ridge-probe R^2 ~ 0): at video frame rates
the image moves 2-10 pixels a frame, a fraction of a token. This head matches frame t
against frame t-1 on a 4x finer grid and says, for every 4x4 cell of frame t, where it is in
frame t-1 (backward flow, pixels) and how much to trust that (a weight in (0, 1)); the pose
then comes from the network's own pointmaps (`mem4d.model.procrustes_pose`).

Parts (all small; ~0.2 M parameters at the tiny preset's sizes):

- ``features``: a 3-layer CNN on the per-image standardised frame -> (B, C, H/4, W/4), and
  beside it the standardised frame pooled to that grid, from which parameter-free patch
  features are made at every pyramid level (each cell's 3x3 neighbourhood, zero-mean and
  unit-norm, so that their correlation is a normalised cross-correlation); both are kept in
  the stream state for the next frame. The fixed features match from the first step, while
  the learned ones are still random;
- a parameter-free coarse-to-fine search with the fixed features (soft-argmax at the coarsest
  level, then around that estimate at each finer level), so that motions beyond one window
  are caught;
- local correlation of frame t's features with frame t-1's, for each part, at ``levels``
  pooled levels in a (2r+1)^2 window around that estimate (`mem4d.layers.local_corr`), plus
  each level's soft-argmax offset;
- context: the decoder's final frame tokens (what is a moving object, what is sky) projected
  and upsampled from 1/16 to 1/4;
- a 3-layer conv head -> residual flow (added to the coarse-to-fine estimate) and a weight
  logit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mem4d.layers.local_corr import local_correlation, pool_pyramid, soft_argmax_offset, window_reader

__all__ = ["CorrespondenceHead", "STRIDE", "patch_features", "quarter_image"]

STRIDE = 4  # pixels per correspondence cell
PATCH = 3  # neighbourhood of the fixed features, in cells
NCC_SHARPNESS = 50.0  # softmax scale of the normalised cross-correlation (a perfect match scores 50; on
# synthetic pairs 50 gave a lower median flow error than 20, 100 or 200)


def quarter_image(frame: Tensor) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, H/4, W/4): the per-image standardised frame, STRIDE-pooled."""
    x = frame.float()
    x = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 0.05)
    return F.avg_pool2d(x, STRIDE)


def patch_features(image: Tensor, level: int = 0) -> Tensor:
    """Parameter-free matching features of a `quarter_image` pooled by 2^level: (B, 3, h, w) ->
    (B, 3 * PATCH^2, h / 2^level, w / 2^level), each cell its zero-mean, unit-norm 3x3
    neighbourhood (so that their correlation is a normalised cross-correlation)."""
    x = pool_pyramid(image, level + 1)[level]
    u = F.unfold(x, PATCH, padding=PATCH // 2).reshape(x.shape[0], -1, *x.shape[-2:])
    return F.normalize(u - u.mean(dim=1, keepdim=True), dim=1)


class CorrespondenceHead(nn.Module):
    """Backward flow of frame t into frame t-1 and a weight per 4x4 cell.

    Args:
        dim: decoder token width D.
        features: matching feature channels C.
        hidden: width of the conv head.
        radius: correlation window radius r (cells of each level).
        levels: correlation levels (level l pools frame t-1's features by 2^l).
        context: channels of the projected decoder tokens.
    """

    def __init__(self, dim: int, features: int = 32, hidden: int = 64, radius: int = 3, levels: int = 3,
                 context: int = 32) -> None:
        super().__init__()
        self.radius, self.levels, self.learned = radius, levels, features
        self.fnet = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(48, features, 3, padding=1),
        )
        self.context = nn.Linear(dim, context)
        window = (2 * radius + 1) ** 2
        self.head = nn.Sequential(
            nn.Conv2d(2 * levels * (window + 2) + context, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, 3, 3, padding=1),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The head starts at the fixed features' soft-argmax flow (zero residual) and a weight of 0.5."""
        last = self.head[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def features(self, frame: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> what frame t+1 is matched against, (B, C + 3, H/4, W/4): the
        CNN's features of the per-image standardised frame, then its `quarter_image` (the fixed
        features are computed from it at every level)."""
        x = frame.to(self.fnet[0].weight.dtype)
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True)
        learned = self.fnet((x - mean) / (std + 0.05))
        return torch.cat([learned.float(), quarter_image(frame)], dim=1).to(learned.dtype)

    def _fixed(self, image: Tensor, prev_image: Tensor) -> list:
        """Per level, a `window_reader` of frame t's patch features (read at the level-0 cells)
        against frame t-1's at the level."""
        h4, w4 = image.shape[-2:]
        readers = []
        for level in range(self.levels):
            q = patch_features(image, level)
            q = q if level == 0 else F.interpolate(q, size=(h4, w4), mode="bilinear", align_corners=False)
            readers.append(window_reader(q, patch_features(prev_image, level), level))
        return readers

    # the softmax scale of the fixed features' correlation: NCC_SHARPNESS for a perfect match
    # (undoes the 1/sqrt(C) of the correlation)
    _sharp = NCC_SHARPNESS * (3 * PATCH**2) ** 0.5

    def coarse_to_fine(self, readers: list) -> Tensor:
        """Parameter-free estimate of the flow (B, 2, h4, w4) in level-0 cells from the fixed
        features' window readers (`_fixed`). Two candidates: the soft-argmax at the coarsest level
        refined around the coarser estimate at each finer level (a search range of
        r * (2^levels - 1) cells: 21 cells, 84 pixels, for r = 3 and 3 levels), and the level-0
        search alone (better for small motions, which the coarse levels blur); each cell keeps the
        one whose final level-0 window peaks higher."""
        r = self.radius
        estimate = None  # None: a window centred on the cell itself
        for level in reversed(range(1, self.levels)):
            window = readers[level](r, estimate) * self._sharp
            step = 2.0**level * soft_argmax_offset(window, r)
            estimate = step if estimate is None else estimate + step
        best, peak = None, None
        for start in (None, estimate) if self.levels > 1 else (None,):
            window = readers[0](r, start) * self._sharp
            candidate = soft_argmax_offset(window, r) if start is None else start + soft_argmax_offset(window, r)
            top = window.amax(dim=1, keepdim=True)
            best = candidate if peak is None else torch.where(top > peak, candidate, best)
            peak = top if peak is None else torch.maximum(top, peak)
        return best

    def forward(self, feats: Tensor, prev_feats: Tensor, tokens: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """
        Args:
            feats, prev_feats: (B, C + 3, H/4, W/4) `features` of frames t and t-1.
            tokens: (B, N, D) final decoder tokens of frame t (N = h*w of ``grid``).
            grid: (h, w) token grid.

        Returns:
            (flow (B, H/4, W/4, 2): (dx, dy) in pixels from each cell centre of frame t to its
            match in frame t-1; weight logit (B, H/4, W/4)).
        """
        B, _, h4, w4 = feats.shape
        C, r = self.learned, self.radius
        with torch.no_grad():  # the fixed features are the frames' pixels: nothing to train through them
            readers = self._fixed(feats[:, C:].float(), prev_feats[:, C:].float())
            estimate = self.coarse_to_fine(readers)  # (B, 2, h4, w4) cells
            fixed = [read(r, estimate) * self._sharp for read in readers]
        corr = local_correlation(feats[:, :C], prev_feats[:, :C], r, self.levels, estimate)
        offsets = [soft_argmax_offset(c, r) for c in corr + fixed]
        ctx = self.context(tokens).transpose(1, 2).reshape(B, -1, *grid)
        ctx = F.interpolate(ctx, size=(h4, w4), mode="bilinear", align_corners=False)
        x = torch.cat([*corr, *[c / NCC_SHARPNESS for c in fixed], *offsets, ctx.to(corr[0].dtype)], dim=1)
        out = self.head(x.to(self.head[0].weight.dtype)).float()
        flow = STRIDE * (estimate + out[:, :2])  # cells are STRIDE pixels
        return flow.permute(0, 2, 3, 1), out[:, 2]
