"""Persistent Structure Memory: FIFO with a permanent anchor, grouping, and the compression cache."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import build_tiny, make_clip

from mem4d.config import Mem4DConfig, PSMConfig
from mem4d.model.positions import pooled_grid
from mem4d.model.psm import fifo_append, plan_groups

pytestmark = pytest.mark.usefixtures("single_thread")


def test_fifo_keeps_frame_zero_and_capacity():
    frames, tokens = [], []
    cap = 5
    for j in range(cap + 10):
        frames, tokens = fifo_append(frames, tokens, j, torch.full((1,), float(j)), cap)
        assert len(frames) == len(tokens) <= cap
        assert frames[0] == 0 and tokens[0].item() == 0
    assert frames == [0, 11, 12, 13, 14]
    assert [t.item() for t in tokens] == [0, 11, 12, 13, 14]


def test_model_psm_never_exceeds_capacity_and_keeps_frame_zero(tiny_model):
    cap = tiny_model.config.psm.capacity
    clip = make_clip(cap + 10, H=32, W=32)
    state = tiny_model.init_state(1, (32, 32))
    with torch.no_grad():
        for t in range(cap + 10):
            _, state = tiny_model.step(clip[:, t], state)
            assert len(state.psm_frames) == len(state.psm_tokens) <= cap
            assert state.psm_frames[0] == 0
    assert state.psm_frames == [0, *range(cap + 10 - (cap - 1), cap + 10)]
    first, _ = tiny_model.step(clip[:, 0], tiny_model.init_state(1, (32, 32)))
    assert len(state.feats) == tiny_model.config.history


def test_groups_follow_absolute_blocks_and_tiers():
    cfg = PSMConfig()  # (1,2,2) d<=4, (2,4,4) d<=20, (4,8,8) beyond
    t = 50
    frames = [0, *range(t - 40, t)]  # 10..49
    groups = plan_groups(frames, t, cfg)
    members = [j for g in groups for j in g.members]
    assert members == list(range(10, 50))  # every recent frame exactly once, frame 0 excluded
    for g in groups:
        kt = cfg.tier_kernels[g.tier][0]
        assert all(cfg.tier(t - j) == g.tier for j in g.members)
        assert len({j // kt for j in g.members}) == 1  # one absolute block
        assert list(g.members) == list(range(g.members[0], g.members[-1] + 1))
    by_tier = {tier: [g.members for g in groups if g.tier == tier] for tier in range(3)}
    assert by_tier[0] == [(46,), (47,), (48,), (49,)]
    assert by_tier[1][0] == (30, 31) and by_tier[1][-1] == (44, 45)
    assert by_tier[2][0] == (10, 11) and by_tier[2][-1] == (28, 29)  # partial blocks at both ends


def test_full_queue_token_count_matches_model_md():
    cfg = Mem4DConfig.paper()
    grid = (24, 32)  # 384 x 512
    for t in range(120, 128):
        groups = plan_groups([0, *range(t - 99, t)], t, cfg.psm)
        total = 768 + sum(math.prod(pooled_grid(grid, *cfg.psm.tier_kernels[g.tier][1:])) for g in groups)
        assert 2160 <= total <= 2220


def _cache_model():
    # Three reachable tiers within a short run: tiers (1,2,2) d<=2, (2,2,2) d<=6, (4,4,4) beyond; N_s = 24.
    psm = PSMConfig(capacity=24, num_layers=1, tier_bounds=(2, 6), tier_kernels=((1, 2, 2), (2, 2, 2), (4, 4, 4)))
    return build_tiny(seed=3, psm=psm)


def test_cached_compression_equals_recomputation_from_scratch():
    model = _cache_model()
    calls = []
    for comp in model.psm.compressors.values():
        comp.register_forward_hook(lambda *_: calls.append(1))
    T = 34  # queue full from t = 24 on, evictions for 10 steps
    clip = make_clip(T, H=64, W=64, seed=2)
    state = model.init_state(1, (64, 64))
    grid = (4, 4)
    per_step = []
    with torch.no_grad():
        for t in range(T):
            if state.psm_frames:
                calls.clear()
                cached = model.psm.readout(state.psm_frames, state.psm_tokens, t, grid, state.psm_cache)
                per_step.append((len(calls), len(plan_groups(state.psm_frames, t, model.config.psm))))
                scratch = model.psm.readout(state.psm_frames, state.psm_tokens, t, grid, None)
                assert torch.equal(cached[0], scratch[0]) and torch.equal(cached[1], scratch[1])
                assert cached[2].keys() == scratch[2].keys()
            _, state = model.step(clip[:, t], state)
    assert {g.tier for g in plan_groups(state.psm_frames, T, model.config.psm)} == {0, 1, 2}
    # With a full queue only the groups whose membership or tier changed are computed.
    steady = per_step[-8:]
    assert max(c for c, _ in steady) <= 5 < min(n for _, n in steady)


def test_state_bytes_stop_growing():
    model = build_tiny(seed=4)
    cap = model.config.psm.capacity
    state = model.init_state(1, (16, 32))  # a 1x2 token grid keeps 200 steps cheap
    frame = make_clip(1, H=16, W=32)[:, 0]
    sizes = {}
    with torch.no_grad():
        for t in range(1, 201):
            _, state = model.step(frame, state)
            sizes[t] = state.nbytes()
    assert sizes[cap + 6] == sizes[200]
    assert max(sizes[t] for t in range(cap + 6, 201)) == sizes[200]
    assert len(state.psm_cache) == len(plan_groups(state.psm_frames, 200, model.config.psm))
