"""Rotary position embedding (RoPE) over 1, 2 or 3 position axes.

The head dimension is cut into ``num_axes`` contiguous chunks; chunk ``a`` is rotated by
the angle ``positions[..., a] * f_i`` with ``f_i = base ** (-i / (d_a / 2))``,
``i = 0 .. d_a/2 - 1``. Inside a chunk of width ``d_a``, channel ``j`` is paired with
channel ``j + d_a/2`` (half-split, "rotate-half" / NeoX pairing, not interleaved):

    t'[j]        = t[j]        * cos(p f_j) - t[j + d/2] * sin(p f_j)
    t'[j + d/2]  = t[j + d/2]  * cos(p f_j) + t[j]       * sin(p f_j)

With ``num_axes=2``, ``base=100`` and positions ``(y, x)`` this is exactly CUT3R/CroCo's
``RoPE2D`` (channels ``0..D/2-1`` rotate with the patch row y, the rest with the column x);
see ``reference/cut3r_encoder_parity/README.md``. With ``num_axes=3`` over ``(t, y, x)`` it is
the 3D RoPE of the TCA, motion encoder and fusion decoder.

Angles, cos/sin and the rotation are computed on the fly in float32 (whatever the input
dtype), so any position works: fractional, negative (e.g. a pose token at -1), or larger
than anything seen before. Nothing is cached and the module has no buffers, so it survives
``.to(dtype)``, meta-device construction and ``strict`` state-dict loading unchanged.

Example:
    >>> rope = RotaryEmbedding(head_dim=64, num_axes=2)
    >>> q = torch.randn(1, 2, 6, 64)                       # (B, heads, N, head_dim)
    >>> pos = grid_positions(2, 3).unsqueeze(0)            # (1, 6, 2), columns (y, x)
    >>> rope(q, pos).shape
    torch.Size([1, 2, 6, 64])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RotaryEmbedding", "default_axis_dims", "grid_positions"]


def default_axis_dims(head_dim: int, num_axes: int) -> tuple[int, ...]:
    """Split ``head_dim`` into ``num_axes`` even chunks, as equal as possible.

    Earlier axes get the extra pairs: ``default_axis_dims(64, 3) == (22, 22, 20)``.
    """
    if num_axes < 1:
        raise ValueError(f"num_axes must be >= 1, got {num_axes}")
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    pairs, extra = divmod(head_dim // 2, num_axes)
    if pairs == 0:
        raise ValueError(f"head_dim={head_dim} is too small for {num_axes} RoPE axes (each needs >= 2 channels)")
    return tuple(2 * (pairs + (1 if a < extra else 0)) for a in range(num_axes))


def grid_positions(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """Integer patch positions of an ``h x w`` token grid, shape ``(h*w, 2)``, columns ``(y, x)``.

    Row-major: token ``n = row * w + col`` sits at ``(row, col)``. This equals CUT3R's
    ``positions.npy`` (``torch.cartesian_prod(arange(h), arange(w))``).
    """
    ys = torch.arange(h, device=device, dtype=torch.long)
    xs = torch.arange(w, device=device, dtype=torch.long)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(h * w, 2)


class RotaryEmbedding(nn.Module):
    """Multi-axis rotary embedding (half-split pairing inside each axis chunk).

    Args:
        head_dim: channels per attention head (even).
        num_axes: number of position coordinates (2 for (y, x), 3 for (t, y, x)).
        base: frequency base (CUT3R's encoder uses 100, "RoPE100").
        axis_dims: channels given to each axis (each even, summing to ``head_dim``);
            default :func:`default_axis_dims`.
    """

    def __init__(
        self,
        head_dim: int,
        num_axes: int,
        base: float = 100.0,
        axis_dims: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if axis_dims is None:
            axis_dims = default_axis_dims(head_dim, num_axes)
        axis_dims = tuple(int(d) for d in axis_dims)
        if len(axis_dims) != num_axes:
            raise ValueError(f"axis_dims {axis_dims} must have num_axes={num_axes} entries")
        if any(d <= 0 or d % 2 for d in axis_dims) or sum(axis_dims) != head_dim:
            raise ValueError(f"axis_dims {axis_dims} must be positive, even and sum to head_dim={head_dim}")
        if base <= 0:
            raise ValueError(f"RoPE base must be > 0, got {base}")
        self.head_dim = head_dim
        self.num_axes = num_axes
        self.base = float(base)
        self.axis_dims = axis_dims

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, num_axes={self.num_axes}, base={self.base}, axis_dims={self.axis_dims}"

    def inv_freq(self, axis: int, device: torch.device | None = None) -> Tensor:
        """Frequencies ``base ** (-i / (d/2))`` of one axis chunk, float32 of shape ``(d/2,)``.

        Constants, memoised per (axis, device) in a plain dict (not a buffer, so state dicts and
        meta-device construction are unaffected).
        """
        key = (axis, str(device))
        cache = self.__dict__.setdefault("_inv_freq_cache", {})
        if key not in cache:
            cache[key] = self._compute_inv_freq(axis, device)
        return cache[key]

    def _compute_inv_freq(self, axis: int, device: torch.device | None) -> Tensor:
        half = self.axis_dims[axis] // 2
        # float64 then float32: the table is exact to float32 rounding whatever the device.
        exponent = torch.arange(half, dtype=torch.float64, device=device) / half
        return (self.base ** (-exponent)).to(torch.float32)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotate ``x`` by its positions.

        Args:
            x: ``(B, heads, N, head_dim)``, any float dtype.
            positions: ``(B, N, num_axes)`` or ``(N, num_axes)``, int or float; fractional and
                negative values are fine.

        Returns:
            Tensor of the same shape and dtype as ``x``.
        """
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"RoPE expects head_dim={self.head_dim}, got x of shape {tuple(x.shape)}")
        if positions.shape[-1] != self.num_axes:
            raise ValueError(
                f"RoPE expects positions (..., N, {self.num_axes}), got shape {tuple(positions.shape)}"
            )
        if positions.dim() == 2:
            positions = positions.unsqueeze(0)
        if positions.dim() != 3 or positions.shape[-2] != x.shape[-2]:
            raise ValueError(
                f"positions {tuple(positions.shape)} do not match x {tuple(x.shape)}: expected (B, N, {self.num_axes})"
            )
        pos = positions.to(device=x.device, dtype=torch.float32).unsqueeze(1)  # (B, 1, N, A)
        xf = x.float()
        out = []
        start = 0
        for axis, d in enumerate(self.axis_dims):
            half = d // 2
            angle = pos[..., axis : axis + 1] * self.inv_freq(axis, x.device)  # (B, 1, N, d/2)
            cos, sin = angle.cos(), angle.sin()
            a = xf[..., start : start + half]
            b = xf[..., start + half : start + d]
            out.append(a * cos - b * sin)
            out.append(b * cos + a * sin)
            start += d
        return torch.cat(out, dim=-1).to(x.dtype)
