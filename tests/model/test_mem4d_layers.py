"""The correlation pyramid lookup (TDM) and the DPT head."""

from __future__ import annotations

import math

import pytest
import torch

from mem4d.layers.corr import corr_features, corr_pyramid, lookup_local
from mem4d.layers.dpt import DPTHead

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("grid", [(4, 4), (3, 5), (1, 2)])
def test_pyramid_shapes_and_channel_count(grid):
    h, w = grid
    f1, f2 = torch.randn(2, h * w, 8), torch.randn(2, h * w, 8)
    pyr = corr_pyramid(f1, f2, grid, levels=4)
    sizes = [tuple(p.shape[-2:]) for p in pyr]
    expect, (a, b) = [], (h, w)
    for _ in range(4):
        expect.append((a, b))
        a, b = math.ceil(a / 2), math.ceil(b / 2)
    assert sizes == expect
    assert corr_features(f1, f2, grid).shape == (2, h * w, 324)


def test_level_zero_window_reads_the_correlation_around_the_same_location():
    h, w, C, r = 4, 5, 6, 2
    f1, f2 = torch.randn(1, h * w, C), torch.randn(1, h * w, C)
    feats = lookup_local(corr_pyramid(f1, f2, (h, w), 1), (h, w), r)  # (1, N, (2r+1)^2)
    corr = (f1[0] @ f2[0].T / math.sqrt(C)).reshape(h, w, h, w)
    win = feats[0].reshape(h, w, 2 * r + 1, 2 * r + 1)
    for i in range(h):
        for j in range(w):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    m, n = i + dy, j + dx
                    expect = corr[i, j, m, n] if 0 <= m < h and 0 <= n < w else torch.tensor(0.0)
                    torch.testing.assert_close(win[i, j, dy + r, dx + r], expect, atol=1e-5, rtol=1e-5)


def test_coarse_levels_pool_and_centre_on_the_same_location():
    h = w = 4
    f1, f2 = torch.randn(1, 16, 4), torch.randn(1, 16, 4)
    pyr = corr_pyramid(f1, f2, (h, w), 2)
    manual = pyr[0].reshape(16, 2, 2, 2, 2).mean(dim=(2, 4))  # level 1 = 2x2 average pooling
    torch.testing.assert_close(pyr[1][:, 0], manual)
    # Query (1, 1) sits at level-1 coordinate (1 + 0.5) / 2 - 0.5 = 0.25 in both axes: bilinear weights
    # 0.75 / 0.25 between cells 0 and 1; the window centre (dy = dx = 0) is the 41st of 81 channels.
    feats = lookup_local(pyr, (h, w), radius=4)
    q = 1 * w + 1
    c = manual[q]
    expect = 0.75 * 0.75 * c[0, 0] + 0.75 * 0.25 * (c[0, 1] + c[1, 0]) + 0.25 * 0.25 * c[1, 1]
    torch.testing.assert_close(feats[0, q, 81 + 40], expect)


@pytest.mark.parametrize("full_res", [True, False])
def test_dpt_head_shapes_and_gradients(full_res):
    head = DPTHead((24, 16, 16, 16), out_channels=4, features=8, layer_dims=(4, 8, 8, 16), hidden=4, full_res=full_res)
    for grid in [(3, 5), (1, 2)]:
        toks = [torch.randn(2, grid[0] * grid[1], c, requires_grad=True) for c in (24, 16, 16, 16)]
        out = head(toks, grid)
        assert out.shape == (2, 4, 16 * grid[0], 16 * grid[1])
        out.square().mean().backward()
        assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in toks)


def test_dpt_head_rejects_wrong_number_of_inputs():
    with pytest.raises(ValueError):
        DPTHead((8, 8, 8), 4)
