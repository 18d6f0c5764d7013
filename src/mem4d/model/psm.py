"""Persistent Structure Memory, PSM (paper §3.2, Eq. 5).

**Write** (after frame t is predicted): the light encoder E_p (patch embed of the predicted
global pointmap, normalised by the scene scale of frame 0's prediction, + self-attention
blocks) gives P_t (B, N, D), appended to a FIFO of capacity N_s whose slot 0 (frame 0) is
never evicted (:func:`fifo_append`).

**Readout** (before frame t's decoder): each held frame j is compressed according to its
temporal distance d = t - j by its tier's kernel (t, y, x) = stride (default (1,2,2) for
d = 1..4, (2,4,4) for 5..20, (4,8,8) for 21+); frame 0 is never compressed. A compressor is a
depthwise 3D conv + a pointwise linear (cheap: ~(kt*ky*kx + D) * D parameters per tier), or
with ``psm.compressor = "dense"`` one full D -> D 3D conv per tier.

**Groups and the cache.** Frames are grouped by *absolute* index: in a tier with temporal
kernel kt, frame j belongs to block ``j // kt``, and the group is the held frames of that
tier and block (a run of consecutive frames; at the tier boundaries and at the old end of
the queue it may be partial, the missing temporal slots are zeros). A group's compressed
tokens depend only on its key ``(tier, first, last)`` and its frames' P_j, which never change
once written, so the tokens are reused from the previous step's readout whenever the key
reappears. Per step only the groups whose membership or tier changed are computed (about
one per tier boundary and one at each end of the queue), and the result is identical to
recomputing everything (``readout(..., cache=None)``), which the tests check.

**Positions** (3D RoPE, t in frames before the current one). A compressed token sits at the
centre of the grid region it covers and at time ``-min(d, max_distance)``, d = t - mean(member
j); frame 0's tokens at ``-min(t, max_distance + 1)`` (``PSMConfig.time_position``). The
clamp keeps every readout position inside the range the training clips showed, so the
memory reads the same at frame 200 and at frame 10,000 (unclamped, frame 0 at -t would rotate
the anchor's keys by angles no training clip produced, more with every frame of the video).

With a full queue at 512x384 (32x24 tokens, N_s = 100) the readout holds 2,160 to 2,220
tokens (partial groups at the tier boundaries and the old end of the queue depend on how the
absolute blocks align with t).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mem4d.config import Mem4DConfig, PSMConfig
from mem4d.layers.block import Block
from mem4d.layers.patch_embed import PatchEmbed
from mem4d.layers.rope import RotaryEmbedding
from mem4d.model.checkpointing import CheckpointedBlocks
from mem4d.model.positions import frame_positions, pooled_positions

__all__ = ["Group", "GroupCompressor", "PersistentStructureMemory", "PointmapEncoder", "fifo_append", "plan_groups"]


def fifo_append(frames: list[int], tokens: list[Tensor], index: int, new: Tensor, capacity: int) -> tuple[list[int], list[Tensor]]:
    """New lists with frame ``index`` appended; over capacity the oldest frame after slot 0 goes."""
    frames, tokens = [*frames, index], [*tokens, new]
    while len(frames) > capacity:
        del frames[1], tokens[1]
    return frames, tokens


@dataclass(frozen=True)
class Group:
    """Frames compressed together: ``members`` (ascending absolute indices) of one tier."""

    tier: int
    members: tuple[int, ...]

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.tier, self.members[0], self.members[-1])


def plan_groups(frames: list[int], t: int, cfg: PSMConfig) -> list[Group]:
    """Groups of the held frames (frame 0 excluded) for the readout of frame ``t``, oldest first."""
    blocks: dict[tuple[int, int], list[int]] = {}
    for j in frames:
        if j == 0:
            continue
        tier = cfg.tier(t - j)
        blocks.setdefault((tier, j // cfg.tier_kernels[tier][0]), []).append(j)
    return sorted((Group(tier, tuple(m)) for (tier, _), m in blocks.items()), key=lambda g: g.members[0])


class PointmapEncoder(CheckpointedBlocks, nn.Module):
    """E_p: pointmap (B, H, W, 3) -> P_t (B, N, D).

    Input: ``pts_world / scale`` (scale (B,) = mean distance to the origin of frame 0's
    predicted points; ``psm.scale_input = False``: ``pts_world``); with ``fuse_tokens`` the
    frame's final decoder tokens are added through a linear layer.
    """

    def __init__(self, cfg: Mem4DConfig, rope: RotaryEmbedding) -> None:
        super().__init__()
        D = cfg.dim
        self.patch_embed = PatchEmbed(cfg.encoder.patch_size, 3, D)
        self.fuse = nn.Linear(D, D) if cfg.psm.fuse_tokens else None
        self.blocks = nn.ModuleList(
            Block(D, cfg.num_heads, cfg.mlp_ratio, rope=rope, use_mem_norm=False) for _ in range(cfg.psm.num_layers)
        )
        self.norm = nn.LayerNorm(D, eps=1e-6) if cfg.psm.final_norm else nn.Identity()
        self.scale_input = cfg.psm.scale_input

    def forward(self, pts_world: Tensor, scale: Tensor, grid: tuple[int, int], tokens: Tensor | None = None) -> Tensor:
        x = (pts_world / scale.reshape(-1, 1, 1, 1) if self.scale_input else pts_world).permute(0, 3, 1, 2)
        x = self.patch_embed(x.to(self.patch_embed.proj.weight.dtype))
        if self.fuse is not None:
            if tokens is None:
                raise ValueError("psm.fuse_tokens is on: pass the frame's decoder tokens to E_p")
            x = x + self.fuse(tokens)
        pos = frame_positions(grid, 0.0, x.device).unsqueeze(0).expand(x.shape[0], -1, -1)
        for block in self.blocks:
            x = self.run_block(block, x, pos)
        return self.norm(x)


class GroupCompressor(nn.Module):
    """One tier: depthwise Conv3d (kernel = stride = (kt, ky, kx)) + pointwise Linear, or with
    ``dense`` one full Conv3d (``psm.compressor == "dense"``)."""

    def __init__(self, dim: int, kernel: tuple[int, int, int], dense: bool = False) -> None:
        super().__init__()
        self.kernel = tuple(kernel)
        self.dense = dense
        if dense:
            self.conv = nn.Conv3d(dim, dim, kernel_size=self.kernel, stride=self.kernel)
        else:
            self.depthwise = nn.Conv3d(dim, dim, kernel_size=self.kernel, stride=self.kernel, groups=dim)
            self.pointwise = nn.Linear(dim, dim)

    def forward(self, frames: dict[int, Tensor], group: Group, grid: tuple[int, int]) -> Tensor:
        """``frames``: absolute index -> (B, N, D) for the group's members -> (B, n, D)."""
        kt, ky, kx = self.kernel
        first_slot = group.members[0] // kt * kt
        ref = frames[group.members[0]]
        B, N, D = ref.shape
        h, w = grid
        zero = None
        slots = []
        for j in range(first_slot, first_slot + kt):  # absolute temporal slots of the block
            if j in group.members:
                slots.append(frames[j])
            else:
                zero = torch.zeros_like(ref) if zero is None else zero
                slots.append(zero)
        x = torch.stack(slots, dim=2)  # (B, N, kt, D)
        x = x.permute(0, 3, 2, 1).reshape(B, D, kt, h, w)
        x = F.pad(x, (0, -w % kx, 0, -h % ky))
        if self.dense:
            return self.conv(x).flatten(2).transpose(1, 2)  # (B, n, D)
        x = self.depthwise(x).flatten(2).transpose(1, 2)
        return self.pointwise(x)


class PersistentStructureMemory(nn.Module):
    """E_p (write) and the distance-aware compression (readout)."""

    def __init__(self, cfg: Mem4DConfig, rope: RotaryEmbedding) -> None:
        super().__init__()
        self.cfg = cfg.psm
        self.encoder = PointmapEncoder(cfg, rope)
        # Only tiers reachable with this capacity get a compressor (tiny: no (4,8,8) tier).
        self.compressors = nn.ModuleDict(
            {str(i): GroupCompressor(cfg.dim, cfg.psm.tier_kernels[i], dense=cfg.psm.compressor == "dense")
             for i in cfg.psm.reachable_tiers()}
        )

    def write(
        self,
        frames: list[int],
        tokens: list[Tensor],
        scale: Tensor | None,
        t: int,
        pts_world: Tensor,
        grid: tuple[int, int],
        decoder_tokens: Tensor | None = None,
    ) -> tuple[list[int], list[Tensor], Tensor]:
        """Appends P_t = E_p(X^g_t) after frame ``t`` is predicted.

        Args:
            frames / tokens: the queue before the write.
            scale: (B,) scene scale, or None at frame 0 (then taken from ``pts_world``, detached).
            pts_world: (B, H, W, 3) predicted global pointmap of frame t (detached first if
                ``psm.detach_input``).
            decoder_tokens: (B, N, D) final decoder tokens (used with ``psm.fuse_tokens``).

        Returns:
            (new frames, new tokens, scale); the inputs are not modified.
        """
        pts = pts_world.detach() if self.cfg.detach_input else pts_world
        if scale is None:
            scale = pts.detach().norm(dim=-1).mean(dim=(1, 2)).clamp_min(1e-6)
        P = self.encoder(pts, scale, grid, decoder_tokens if self.cfg.fuse_tokens else None)
        frames, tokens = fifo_append(frames, tokens, t, P, self.cfg.capacity)
        return frames, tokens, scale

    def readout(
        self,
        frames: list[int],
        tokens: list[Tensor],
        t: int,
        grid: tuple[int, int],
        cache: dict[tuple[int, int, int], Tensor] | None,
    ) -> tuple[Tensor, Tensor, dict[tuple[int, int, int], Tensor]] | None:
        """Compressed memory for the readout of frame ``t``.

        Args:
            frames / tokens: the queue (absolute indices ascending, P_j each (B, N, D)).
            t: index of the frame about to be predicted (> every held index).
            grid: (h, w).
            cache: the previous readout's groups, or None to compute every group afresh.

        Returns:
            (memory tokens (B, M, D), positions (M, 3), the cache of this readout), or None
            when the queue is empty (frame 0).
        """
        if not frames:
            return None
        device = tokens[0].device
        by_index = dict(zip(frames, tokens))
        out, pos = [], []
        if frames[0] == 0:
            out.append(by_index[0])
            pos.append(frame_positions(grid, self.cfg.time_position(t, anchor=True), device))
        new_cache: dict[tuple[int, int, int], Tensor] = {}
        for group in plan_groups(frames, t, self.cfg):
            comp = None if cache is None else cache.get(group.key)
            if comp is None:
                comp = self.compressors[str(group.tier)](by_index, group, grid)
            new_cache[group.key] = comp
            out.append(comp)
            _, ky, kx = self.cfg.tier_kernels[group.tier]
            distance = t - sum(group.members) / len(group.members)
            pos.append(pooled_positions(grid, ky, kx, self.cfg.time_position(distance), device))
        return torch.cat(out, dim=1), torch.cat(pos, dim=0), new_cache
