"""Optional activation (gradient) checkpointing of the transformer blocks of Mem4D's modules.

``Mem4D.set_gradient_checkpointing(True)`` turns it on for every module that mixes in
`CheckpointedBlocks` (TCA, motion encoder, E_p, fusion decoder, unified update): in training
with autograd on, each block's activations are recomputed in the backward pass instead of
being stored, trading ~30 % more compute for much less memory on long clips. The frozen
encoder runs without autograd and needs none.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["CheckpointedBlocks"]


class CheckpointedBlocks:
    """Mixin for an ``nn.Module`` that calls transformer blocks through ``run_block``."""

    gradient_checkpointing: bool = False

    def run_block(self, block: nn.Module, *args: Any) -> torch.Tensor:
        if self.gradient_checkpointing and block.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)
