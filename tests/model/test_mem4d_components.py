"""TCA, TDM, decoder and unified memory in isolation (shapes, conventions, cheap-path equalities)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mem4d.config import Mem4DConfig
from mem4d.layers.rope import RotaryEmbedding
from mem4d.model.decoder import FusionDecoder
from mem4d.model.positions import frame_positions, pooled_positions
from mem4d.model.tca import TemporalContextAggregator
from mem4d.model.tdm import TransientDynamicsMemory
from mem4d.model.unified import UnifiedMemory

CFG = Mem4DConfig.tiny(tca=dataclasses.replace(Mem4DConfig.tiny().tca, num_layers=2))
ROPE = RotaryEmbedding(CFG.dim // CFG.num_heads, 3)
GRID = (3, 4)
N = 12

pytestmark = pytest.mark.usefixtures("single_thread")


def test_positions_sit_at_region_centres():
    pos = pooled_positions((3, 5), 2, 2, -2.0)
    assert pos.tolist() == [[-2, 0.5, 0.5], [-2, 0.5, 2.5], [-2, 0.5, 4.0], [-2, 2.0, 0.5], [-2, 2.0, 2.5], [-2, 2.0, 4.0]]
    assert frame_positions((2, 2), 0.0).tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1]]


def test_tca_keeps_current_rows_and_its_last_layer_shortcut_is_exact():
    torch.manual_seed(0)
    tca = TemporalContextAggregator(CFG, ROPE)
    assert sorted(tca.compress) == ["1", "2", "4"]
    cur, past = torch.randn(2, N, CFG.dim), [torch.randn(2, N, CFG.dim) for _ in range(6)]
    out = tca(cur, past, GRID)
    assert out.shape == cur.shape
    # reference: full self-attention over [current ; compressed past] in every layer
    toks, pos = [cur], [frame_positions(GRID, 0.0)]
    for k, f in enumerate(reversed(past[-5:]), start=1):
        s = CFG.tca.stride(k)
        x = F.pad(f.transpose(1, 2).reshape(2, CFG.dim, *GRID), (0, -GRID[1] % s, 0, -GRID[0] % s))
        toks.append(tca.compress[str(s)](x).flatten(2).transpose(1, 2))
        pos.append(pooled_positions(GRID, s, s, -float(k)))
    x, p = torch.cat(toks, 1), torch.cat(pos).unsqueeze(0).expand(2, -1, -1)
    assert x.shape[1] == N + N + 2 * 4 + 2 * 1  # strides 1, 2, 2, 4, 4 on a 3x4 grid: 12, 4, 4, 1, 1
    for block in tca.blocks:
        x = block(x, p)
    torch.testing.assert_close(out, x[:, :N], atol=1e-6, rtol=1e-6)
    alone = cur
    for block in tca.blocks:  # frame 0: no past, plain self-attention over the current tokens
        alone = block(alone, p[:, :N])
    torch.testing.assert_close(tca(cur, [], GRID), alone)


def test_tdm_uses_the_two_most_recent_frames():
    torch.manual_seed(0)
    tdm = TransientDynamicsMemory(CFG, ROPE).eval()
    cur = torch.randn(1, N, CFG.dim)
    assert tdm(cur, [], GRID) is None
    one = tdm(cur, [torch.randn(1, N, CFG.dim)], GRID)
    assert one[0].shape == (1, N, CFG.dim) and one[1][:, 0].unique().tolist() == [-1.0]
    past = [torch.randn(1, N, CFG.dim) for _ in range(4)]
    tokens, pos = tdm(cur, past, GRID)
    assert tokens.shape == (1, 2 * N, CFG.dim)
    assert pos[:N, 0].unique().tolist() == [-1.0] and pos[N:, 0].unique().tolist() == [-2.0]
    changed = [torch.randn(1, N, CFG.dim), torch.randn(1, N, CFG.dim), *past[-2:]]
    assert torch.equal(tdm(cur, changed, GRID)[0], tokens)  # older frames are not read


def test_decoder_without_memory_is_self_attention_and_memory_changes_it():
    torch.manual_seed(0)
    dec = FusionDecoder(CFG, ROPE)
    x = torch.randn(2, N + 1, CFG.dim)
    pos = torch.cat([frame_positions(GRID, 0.0), torch.tensor([[0.0, 1.0, 1.5]])]).unsqueeze(0).expand(2, -1, -1)
    stages = dec(x, pos, None, None)
    assert len(stages) == CFG.decoder.num_stages and stages[-1].shape == x.shape
    mem = (torch.randn(2, 5, CFG.dim), frame_positions((1, 5), -1.0))
    assert not torch.allclose(dec(x, pos, mem, None)[-1], stages[-1])
    assert not torch.allclose(dec(x, pos, None, mem)[-1], stages[-1])


@pytest.mark.parametrize("variant, motion_norm, spatial_norm", [("no_tdm", False, True), ("no_psm", True, False), ("unified", True, True)])
def test_decoder_blocks_have_memory_norms_only_when_they_read(variant, motion_norm, spatial_norm):
    dec = FusionDecoder(CFG.with_variant(variant), ROPE)
    assert (dec.motion_blocks[0].norm_mem is not None) == motion_norm
    assert (dec.spatial_blocks[0].norm_mem is not None) == spatial_norm


def test_unified_state_update_is_residual_and_fixed_size():
    torch.manual_seed(0)
    cfg = CFG.with_variant("unified")
    mem = UnifiedMemory(cfg, ROPE)
    assert len(mem.blocks) == cfg.tdm.num_layers + cfg.psm.num_layers
    state = mem.initial(2)
    assert state.shape == (2, cfg.unified.num_state_tokens, cfg.dim) and mem.positions().shape == (cfg.unified.num_state_tokens, 3)
    frame = torch.randn(2, N + 1, cfg.dim)
    new = mem.update(state, frame, frame_positions((1, N + 1), 0.0).unsqueeze(0).expand(2, -1, -1))
    assert new.shape == state.shape and not torch.equal(new, state)
