"""Fusion decoder (paper Algorithm 1): L stages of MotionReadBlock then SpatialReadBlock.

Tokens [x_t ; camera token] (B, N+1, D). Each read block is a pre-norm transformer block
whose attention runs over the current tokens plus the memory tokens (TDM tokens for the
MotionReadBlock, compressed PSM tokens for the SpatialReadBlock) with 3D RoPE; memory tokens
are only extra keys/values (own LayerNorm ``norm_mem``, [choice]; ``decoder.mem_norm = False``
makes them share ``norm1``). Without memory (frame 0, or a variant without that memory) a
block is plain self-attention over the current tokens, so every variant keeps the same
decoder depth.
"""

from __future__ import annotations

from torch import Tensor, nn

from mem4d.config import Mem4DConfig
from mem4d.layers.block import Block
from mem4d.layers.rope import RotaryEmbedding
from mem4d.model.checkpointing import CheckpointedBlocks

__all__ = ["FusionDecoder", "MotionReadBlock", "SpatialReadBlock"]

Memory = tuple[Tensor, Tensor] | None  # (tokens (B, M, D), positions (M, 3)) or None


class MotionReadBlock(Block):
    """Reads the Transient Dynamics Memory (high-frequency motion)."""


class SpatialReadBlock(Block):
    """Reads the compressed Persistent Structure Memory (long-term geometry)."""


class FusionDecoder(CheckpointedBlocks, nn.Module):
    """(B, N+1, D) tokens -> the L stage outputs, each (B, N+1, D); the last is layer-normed."""

    def __init__(self, cfg: Mem4DConfig, rope: RotaryEmbedding) -> None:
        super().__init__()
        D, L = cfg.dim, cfg.decoder.num_stages
        # A block whose memory the variant lacks gets no norm_mem (it would never be used);
        # decoder.mem_norm = False: memory tokens share norm1 (plain self-attention over both).
        reads_motion = (cfg.use_tdm or cfg.use_unified) and cfg.decoder.mem_norm
        reads_spatial = (cfg.use_psm or cfg.use_unified) and cfg.decoder.mem_norm
        self.motion_blocks = nn.ModuleList(
            MotionReadBlock(D, cfg.num_heads, cfg.mlp_ratio, rope=rope, use_mem_norm=reads_motion) for _ in range(L)
        )
        self.spatial_blocks = nn.ModuleList(
            SpatialReadBlock(D, cfg.num_heads, cfg.mlp_ratio, rope=rope, use_mem_norm=reads_spatial) for _ in range(L)
        )
        self.norm = nn.LayerNorm(D, eps=1e-6)

    def forward(self, x: Tensor, pos: Tensor, motion: Memory, spatial: Memory) -> list[Tensor]:
        """
        Args:
            x: (B, N+1, D) [enriched frame tokens ; camera token].
            pos: (B, N+1, 3) their (t, y, x) positions.
            motion / spatial: memories read by the two block kinds (None: self-attention).
        """
        stages = []
        for motion_block, spatial_block in zip(self.motion_blocks, self.spatial_blocks):
            x = self._read(motion_block, x, pos, motion)
            x = self._read(spatial_block, x, pos, spatial)
            stages.append(x)
        stages[-1] = self.norm(stages[-1])
        return stages

    def _read(self, block: Block, x: Tensor, pos: Tensor, memory: Memory) -> Tensor:
        if memory is None:
            return self.run_block(block, x, pos)
        mem, mem_pos = memory
        return self.run_block(block, x, pos, mem, mem_pos.unsqueeze(0).expand(x.shape[0], -1, -1))
