"""RoPE conventions (CUT3R RoPE2D), relative-position property, 3D and bf16."""

import math

import numpy as np
import pytest
import torch

from mem4d.layers.rope import RotaryEmbedding, default_axis_dims, grid_positions


def _unit(channel: int, dim: int = 64) -> torch.Tensor:
    t = torch.zeros(1, 1, 1, dim)
    t[..., channel] = 1.0
    return t


def test_convention_cut3r_probe():
    rope = RotaryEmbedding(64, 2, base=100.0)
    out = rope(_unit(0), torch.tensor([[[1.0, 0.0]]]))[0, 0, 0]
    expect = torch.zeros(64)
    expect[0], expect[16] = math.cos(1.0), math.sin(1.0)
    torch.testing.assert_close(out, expect, atol=1e-7, rtol=0)
    # x does not touch the y half
    torch.testing.assert_close(rope(_unit(0), torch.tensor([[[0.0, 1.0]]])), _unit(0), atol=0, rtol=0)
    # channel 32 rotates into 48 only with x
    torch.testing.assert_close(rope(_unit(32), torch.tensor([[[5.0, 0.0]]])), _unit(32), atol=0, rtol=0)
    out = rope(_unit(32), torch.tensor([[[0.0, 1.0]]]))[0, 0, 0]
    assert out[32].item() == pytest.approx(math.cos(1.0)) and out[48].item() == pytest.approx(math.sin(1.0))
    assert torch.count_nonzero(out.abs() > 1e-7) == 2


def test_convention_frequencies():
    rope = RotaryEmbedding(64, 2)
    f = rope.inv_freq(0)
    assert f.shape == (16,) and f[0] == 1.0
    assert f[15].item() == pytest.approx(100 ** (-15 / 16), rel=1e-6)  # 0.013335
    # channel j pairs with j+16 at frequency f_j: probe channel 5 at y=2
    out = rope(_unit(5), torch.tensor([[[2.0, 0.0]]]))[0, 0, 0]
    ang = 2.0 * 100 ** (-5 / 16)
    assert out[5].item() == pytest.approx(math.cos(ang), abs=1e-6)
    assert out[21].item() == pytest.approx(math.sin(ang), abs=1e-6)


def test_formula_matches_reference_implementation():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 64, dtype=torch.float64)
    pos = torch.randn(2, 7, 2, dtype=torch.float64) * 10
    out = RotaryEmbedding(64, 2)(x.float(), pos).double()
    # float64 re-derivation of the README formula
    ref = []
    for a in range(2):
        t = x[..., 32 * a : 32 * (a + 1)]
        ang = pos[:, None, :, a, None] * 100.0 ** (-torch.arange(16, dtype=torch.float64) / 16)
        u, v = t[..., :16], t[..., 16:]
        ref += [u * ang.cos() - v * ang.sin(), v * ang.cos() + u * ang.sin()]
    torch.testing.assert_close(out, torch.cat(ref, -1), atol=2e-5, rtol=0)


@pytest.mark.parametrize("num_axes", [1, 2, 3])
def test_relative_position_property(num_axes):
    """q.k after RoPE depends only on position differences (fractional and negative too)."""
    torch.manual_seed(num_axes)
    rope = RotaryEmbedding(48, num_axes)
    q, k = torch.randn(1, 1, 1, 48, dtype=torch.float64), torch.randn(1, 1, 1, 48, dtype=torch.float64)
    pq = torch.tensor([0.3, -2.5, 1.75][:num_axes])
    pk = torch.tensor([-1.2, 0.5, 4.0][:num_axes])
    dots = []
    for shift in (torch.zeros(num_axes), torch.tensor([7.25, -3.5, 0.125][:num_axes]), torch.full((num_axes,), -11.0)):
        rq = rope(q.float(), (pq + shift).view(1, 1, -1))
        rk = rope(k.float(), (pk + shift).view(1, 1, -1))
        dots.append((rq * rk).sum().item())
    assert dots[0] == pytest.approx(dots[1], abs=1e-4) and dots[0] == pytest.approx(dots[2], abs=1e-4)
    # and it does depend on the difference
    rk2 = rope(k.float(), (pk + 1.0).view(1, 1, -1))
    assert abs((rope(q.float(), pq.view(1, 1, -1)) * rk2).sum().item() - dots[0]) > 1e-3


def test_rotation_preserves_norm_and_zero_is_identity():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 10, 64)
    rope = RotaryEmbedding(64, 3)
    pos = torch.randn(2, 10, 3) * 50
    torch.testing.assert_close(rope(x, pos).norm(dim=-1), x.norm(dim=-1), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(rope(x, torch.zeros(2, 10, 3)), x, atol=0, rtol=0)


def test_3d_rope_axis_split():
    assert default_axis_dims(64, 3) == (22, 22, 20)
    assert default_axis_dims(64, 2) == (32, 32)
    assert default_axis_dims(96, 3) == (32, 32, 32)
    rope = RotaryEmbedding(64, 3)
    assert rope.axis_dims == (22, 22, 20)
    # time axis rotates channels 0..21 only, pairing j with j+11
    out = rope(_unit(0), torch.tensor([[[1.0, 0.0, 0.0]]]))[0, 0, 0]
    assert out[0].item() == pytest.approx(math.cos(1.0)) and out[11].item() == pytest.approx(math.sin(1.0))
    # x axis owns channels 44..63 with pairing j with j+10
    out = rope(_unit(44), torch.tensor([[[0.0, 0.0, 1.0]]]))[0, 0, 0]
    assert out[44].item() == pytest.approx(math.cos(1.0)) and out[54].item() == pytest.approx(math.sin(1.0))
    custom = RotaryEmbedding(64, 3, axis_dims=(16, 24, 24))
    assert custom(torch.randn(2, 2, 5, 64), torch.randn(2, 5, 3)).shape == (2, 2, 5, 64)
    with pytest.raises(ValueError):
        RotaryEmbedding(64, 3, axis_dims=(16, 24, 23))
    with pytest.raises(ValueError):
        RotaryEmbedding(64, 2)(torch.randn(1, 1, 5, 64), torch.randn(1, 5, 3))


def test_bf16_and_int_positions():
    torch.manual_seed(2)
    rope = RotaryEmbedding(64, 2)
    x = torch.randn(2, 2, 12, 64)
    pos = grid_positions(3, 4).unsqueeze(0).expand(2, -1, -1)  # int64
    ref = rope(x, pos)
    out = rope(x.bfloat16(), pos)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=2e-2)
    # (N, A) positions broadcast over the batch
    torch.testing.assert_close(rope(x, grid_positions(3, 4)), ref)


def test_module_is_stateless():
    rope = RotaryEmbedding(64, 2)
    assert not list(rope.parameters()) and not list(rope.buffers())
    assert rope.to(torch.bfloat16).inv_freq(0).dtype == torch.float32


def test_grid_positions_match_cut3r(shared_reference):
    pos = grid_positions(4, 6)
    assert pos.dtype == torch.long and pos.shape == (24, 2)
    np.testing.assert_array_equal(pos.numpy(), np.load(shared_reference / "cut3r_encoder_parity" / "positions.npy"))
    assert pos[7].tolist() == [1, 1] and pos[5].tolist() == [0, 5]
