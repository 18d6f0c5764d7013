"""``tdm.input``: the TDM correlates the projected encoder features (Eq. 3 as written) or the
TCA-enriched tokens (the ablation option)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import build_tiny, make_clip

from mem4d.config import Mem4DConfig, TDMConfig
from mem4d.model.state import StreamState

pytestmark = pytest.mark.usefixtures("single_thread")


def _tdm(value: str) -> TDMConfig:
    return dataclasses.replace(Mem4DConfig.tiny().tdm, input=value)


def test_tdm_input_is_validated():
    with pytest.raises(ValueError, match="TDMConfig.input"):
        TDMConfig(input="tokens")
    assert Mem4DConfig.tiny().tdm.input == Mem4DConfig.paper().tdm.input == "encoder"


def test_enriched_tdm_correlates_the_tca_outputs_of_this_and_the_past_frames():
    model = build_tiny(seed=5, tdm=_tdm("enriched"))
    seen = {"tca": [], "tdm": []}
    model.tca.register_forward_hook(lambda m, args, out: seen["tca"].append(out))
    model.tdm.register_forward_hook(lambda m, args, out: seen["tdm"].append((args[0], list(args[1]))))
    clip = make_clip(5)
    state = model.init_state(1, (48, 64))
    with torch.no_grad():
        for t in range(5):
            _, state = model.step(clip[:, t], state)
            assert len(state.tdm_feats) == min(t + 1, model.config.tdm.num_past)
            assert torch.equal(state.tdm_feats[-1], seen["tca"][t])
    for t, (current, past) in enumerate(seen["tdm"]):
        assert torch.equal(current, seen["tca"][t])  # x_t, not F_t
        assert len(past) == min(t, 2) and all(torch.equal(p, x) for p, x in zip(past, seen["tca"][max(0, t - 2):t]))


def test_enriched_changes_the_prediction_from_frame_1_on_and_streams_like_forward():
    encoder = build_tiny(seed=6)
    enriched = build_tiny(seed=6, tdm=_tdm("enriched"))
    enriched.load_state_dict(encoder.state_dict())  # same weights, only the TDM input differs
    clip = make_clip(4, seed=7)
    with torch.no_grad():
        a, b = encoder(clip), enriched(clip)
        stepped, state = [], enriched.init_state(1, (48, 64))
        for t in range(4):
            out, state = enriched.step(clip[:, t], state)
            stepped.append(out.depth)
    assert torch.equal(a.depth[:, 0], b.depth[:, 0])  # frame 0: no past frame, no TDM tokens
    assert not torch.allclose(a.depth[:, 1:], b.depth[:, 1:])
    torch.testing.assert_close(torch.stack(stepped, 1), b.depth, atol=1e-6, rtol=1e-6)


def test_enriched_state_survives_save_and_load(tmp_path):
    model = build_tiny(seed=8, tdm=_tdm("enriched"))
    clip = make_clip(5, seed=9)
    state = model.init_state(1, (48, 64))
    with torch.no_grad():
        for t in range(3):
            _, state = model.step(clip[:, t], state)
        state.save(tmp_path / "s.safetensors")
        loaded = StreamState.load(tmp_path / "s.safetensors")
        assert len(loaded.tdm_feats) == 2 and all(torch.equal(a, b) for a, b in zip(loaded.tdm_feats, state.tdm_feats))
        x, _ = model.step(clip[:, 3], state)
        y, _ = model.step(clip[:, 3], loaded)
    assert torch.equal(x.depth, y.depth)


def test_without_a_tca_both_inputs_are_the_same_tensors():
    encoder = build_tiny(seed=10, variant="no_tca")
    enriched = build_tiny(seed=10, variant="no_tca", tdm=_tdm("enriched"))
    clip = make_clip(4, seed=11)
    with torch.no_grad():
        assert torch.equal(encoder(clip).depth, enriched(clip).depth)
