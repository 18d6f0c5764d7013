"""Local correlation windows and their soft-argmax find a known shift between two feature maps."""

from __future__ import annotations

import pytest
import torch

from mem4d.layers.local_corr import local_correlation, soft_argmax_offset


def _shifted(dx: int, dy: int, smooth: int = 1):
    g = torch.Generator().manual_seed(0)
    big = torch.randn(1, 16, 40 // smooth, 48 // smooth, generator=g)
    big = torch.nn.functional.interpolate(big, size=(40, 48), mode="bilinear") if smooth > 1 else big
    big = torch.nn.functional.normalize(big, dim=1)  # unit norm: the self-match is the maximum
    f2 = big[:, :, 8:32, 8:40]  # frame t-1
    f1 = big[:, :, 8 + dy:32 + dy, 8 + dx:40 + dx]  # frame t: cell (i, j) is cell (i+dy, j+dx) of t-1
    return f1, f2


@pytest.mark.parametrize("dx,dy", [(0, 0), (2, -1), (-3, 3)])
def test_level0_window_peaks_at_the_shift(dx, dy):
    f1, f2 = _shifted(dx, dy)
    corr = local_correlation(f1, f2, radius=3, levels=2)
    assert [c.shape for c in corr] == [(1, 49, 24, 32)] * 2
    peak = corr[0][0, :, 6:-6, 6:-6].argmax(0)  # interior cells (their match is inside the map)
    expected = (dy + 3) * 7 + (dx + 3)
    assert bool((peak == expected).all())
    offset = soft_argmax_offset(corr[0] * 40, radius=3)[0, :, 6:-6, 6:-6]  # sharp softmax
    torch.testing.assert_close(offset.mean((1, 2)), torch.tensor([float(dx), float(dy)]), atol=0.15, rtol=0)


def test_coarser_levels_reach_shifts_beyond_the_radius():
    f1, f2 = _shifted(6, 0, smooth=4)  # image-like (smooth) features; 6 cells: outside a radius-3 window at level 0, 3 cells at level 1
    corr = local_correlation(f1, f2, radius=3, levels=2)
    peak = corr[1][0, :, 4:-4, 4:-10].argmax(0)
    assert (peak == 3 * 7 + 6).float().mean() > 0.9  # (dy, dx) = (0, +3) level-1 cells


def test_mismatched_maps_are_rejected():
    with pytest.raises(ValueError, match="equal shape"):
        local_correlation(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 6), 2, 1)


@pytest.mark.parametrize("size", [(9, 13), (12, 16)])  # odd sizes: the pyramid pads by replication
def test_volume_route_equals_feature_sampling(size, monkeypatch):
    """The all-pairs route (training sizes) and the feature-sampling route (large maps) give the
    same windows and the same gradients, with per-cell centres off the grid."""
    from mem4d.layers import local_corr

    g = torch.Generator().manual_seed(1)
    f1 = torch.randn(2, 8, *size, generator=g, requires_grad=True)
    f2 = torch.randn(2, 8, *size, generator=g, requires_grad=True)
    centre = 3 * torch.randn(2, 2, *size, generator=g)
    results = []
    for limit in (10**12, 0):  # volume, then features
        monkeypatch.setattr(local_corr, "VOLUME_LIMIT", limit)
        corr = local_correlation(f1, f2, radius=2, levels=3, centre=centre)
        single = local_corr.correlation_window(f1, f2, 0, 2, centre)
        weights = [torch.randn(c.shape, generator=torch.Generator().manual_seed(i)) for i, c in enumerate(corr)]
        grads = torch.autograd.grad(sum((c * wt).sum() for c, wt in zip(corr, weights)), (f1, f2))
        results.append((corr, single, grads))
    (c_vol, s_vol, g_vol), (c_feat, s_feat, g_feat) = results
    for a, b in zip(c_vol + [s_vol] + list(g_vol), c_feat + [s_feat] + list(g_feat)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert not torch.equal(c_vol[0], c_vol[1])  # the levels differ (the test could fail)
