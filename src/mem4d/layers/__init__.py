"""Transformer building blocks: RoPE (2D/3D), attention with memory tokens, block, MLP, patch embedding."""

from mem4d.layers.attention import Attention
from mem4d.layers.block import Block
from mem4d.layers.mlp import Mlp
from mem4d.layers.patch_embed import PatchEmbed
from mem4d.layers.rope import RotaryEmbedding, default_axis_dims, grid_positions

__all__ = [
    "Attention",
    "Block",
    "Mlp",
    "PatchEmbed",
    "RotaryEmbedding",
    "default_axis_dims",
    "grid_positions",
]
