"""Starting from a CUT3R checkpoint beyond the encoder (``mem4d.model.cut3r_weights``), tested on
a state dict with the names and shapes of ``shared/reference/cut3r_state_dict_manifest.json``.

Cheap at the paper preset: the model is built on the meta device; the checkpoint's tensors are
meta tensors too (names and shapes only), except the non-encoder tensors that are loaded, which
get random values (27 M floats) so the test can check that each lands where the map says."""

from __future__ import annotations

import json

import pytest
import torch

from mem4d.config import Mem4DConfig
from mem4d.model.cut3r_weights import cut3r_key_map, load_cut3r_weights
from mem4d.model.mem4d import Mem4D

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def manifest(shared_reference) -> dict[str, tuple[int, ...]]:
    entries = json.loads((shared_reference / "cut3r_state_dict_manifest.json").read_text())
    return {e["key"]: tuple(e["shape"]) for e in entries}


def _checkpoint(manifest: dict[str, tuple[int, ...]], real: set[str]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g) if k in real else torch.empty(s, device="meta") for k, s in manifest.items()}


def test_paper_model_loads_encoder_proj_camera_token_and_both_dpt_heads(manifest):
    with torch.device("meta"):
        model = Mem4D(Mem4DConfig.paper())
    non_encoder = {v for k, v in cut3r_key_map().items()}
    state = _checkpoint(manifest, real=non_encoder)
    report = load_cut3r_weights(model, state)

    # every checkpoint tensor is accounted for, once: loaded or skipped with a reason
    assert sorted([k for _, k, _ in report.loaded] + [k for k, _ in report.skipped]) == sorted(manifest)
    assert all(reason for _, reason in report.skipped)
    components = report.loaded_components()
    n_encoder = sum(k.startswith(("patch_embed.", "enc_blocks.", "enc_norm.")) for k in manifest)
    assert components == {"encoder": n_encoder, "proj": 2, "camera_token": 1, "head_world": 60, "head_cam": 60}
    assert not any(k.startswith(("encoder.", "head_world.", "head_cam.", "proj.")) for k in report.fresh)
    assert {k.split(".")[0] for k in report.fresh} >= {"tca", "tdm", "psm", "decoder", "camera_head"}

    # the values land where the map says (world head <- dpt_cross, self-view head <- dpt_self)
    params = dict(model.named_parameters())
    for ours, theirs in [("proj.weight", "decoder_embed.weight"), ("camera_token", "pose_token"),
                         ("head_world.dpt.project.0.weight", "downstream_head.dpt_cross.act_postprocess.0.0.weight"),
                         ("head_world.dpt.resample.3.bias", "downstream_head.dpt_cross.act_postprocess.3.1.bias"),
                         ("head_cam.dpt.to_features.2.weight", "downstream_head.dpt_self.scratch.layer3_rn.weight"),
                         ("head_cam.dpt.fusion.0.skip_unit.conv2.weight",
                          "downstream_head.dpt_self.scratch.refinenet1.resConfUnit1.conv2.weight"),
                         ("head_cam.dpt.fusion.3.unit.conv1.bias",
                          "downstream_head.dpt_self.scratch.refinenet4.resConfUnit2.conv1.bias"),
                         ("head_world.dpt.out_conv3.weight", "downstream_head.dpt_cross.head.4.weight")]:
        assert torch.equal(params[ours], state[theirs]), ours
    assert params["camera_token"].requires_grad and not params["encoder.enc_norm.weight"].requires_grad

    # the loaded heads are complete: they run on real tensors (encoder + 3 decoder stages, a 2x3 grid)
    toks = [torch.randn(1, 2 * 3, c) for c in (1024, 768, 768, 768)]
    with torch.no_grad():
        pts, conf = model.head_cam(toks, (2, 3))
    assert pts.shape == (1, 32, 48, 3) and torch.isfinite(pts).all() and (conf >= 1).all()

    text = report.summary()
    assert "loaded 415 tensors" in text and "2D RoPE" in text and "colour head" in text


def test_skipped_reasons_name_the_parts_that_do_not_carry_over(manifest):
    with torch.device("meta"):
        model = Mem4D(Mem4DConfig.paper())
    report = load_cut3r_weights(model, _checkpoint(manifest, real=set()))
    reasons = dict(report.skipped)
    assert "alias" in reasons["downstream_head.dpt_self.scratch.layer_rn.0.weight"]
    assert "no skip input" in reasons["downstream_head.dpt_cross.scratch.refinenet4.resConfUnit1.conv1.weight"]
    assert "camera head" in reasons["downstream_head.pose_head.mlp.fc2.weight"]
    assert "ray-map" in reasons["enc_blocks_ray_map.0.attn.qkv.weight"]
    assert "unified memory" in reasons["dec_blocks_state.3.mlp.fc1.weight"]
    assert "no counterpart" not in reasons["dec_blocks.0.attn.qkv.weight"]  # it has a specific reason


def test_a_model_of_another_size_is_refused_with_the_mismatches(manifest):
    with torch.device("meta"):
        model = Mem4D(Mem4DConfig.tiny())
    with pytest.raises(ValueError, match=r"patch_embed.proj.weight \(1024, 3, 16, 16\).*paper"):
        load_cut3r_weights(model, _checkpoint(manifest, real=set()))


def test_a_component_that_does_not_fit_is_skipped_whole(manifest):
    """A paper-size model with narrower DPT heads: encoder, proj and camera token load, no head
    tensor does (not even the ones whose shapes happen to agree, like the 4-channel output bias)."""
    cfg = Mem4DConfig.paper()
    cfg.heads.dpt_features = 128
    with torch.device("meta"):
        model = Mem4D(cfg)
    report = load_cut3r_weights(model, _checkpoint(manifest, real=set()))
    assert set(report.loaded_components()) == {"encoder", "proj", "camera_token"}
    assert "head_cam does not fit" in dict(report.skipped)["downstream_head.dpt_self.head.4.bias"]


def test_missing_parts_of_the_model_are_reported_not_loaded(manifest):
    """A checkpoint tensor whose target the model does not build (here: no world head, as with a
    camera option that drops it) is skipped with that reason; the rest still loads."""
    with torch.device("meta"):
        model = Mem4D(Mem4DConfig.paper())
    del model.head_world  # as a config without a world head would build
    model.head_world = None
    report = load_cut3r_weights(model, _checkpoint(manifest, real=set()))
    reasons = dict(report.skipped)
    assert "has no head_world" in reasons["downstream_head.dpt_cross.head.4.weight"]
    assert report.loaded_components()["head_cam"] == 60
