"""Configs: validation, dict round trips, presets on the meta device and their parameter counts."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mem4d.config import VARIANTS, Mem4DConfig, PSMConfig, TCAConfig
from mem4d.model.mem4d import Mem4D

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_config_dict_round_trip(preset, variant):
    cfg = Mem4DConfig.preset(preset, variant=variant)
    again = Mem4DConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_unknown_keys_are_rejected_by_name():
    data = Mem4DConfig.tiny().to_dict()
    data["colour"] = 1
    with pytest.raises(ValueError, match="colour"):
        Mem4DConfig.from_dict(data)
    data = Mem4DConfig.tiny().to_dict()
    data["psm"]["capcity"] = 3
    with pytest.raises(ValueError, match="capcity"):
        Mem4DConfig.from_dict(data)


@pytest.mark.parametrize(
    "bad",
    [
        dict(dim=130, num_heads=4),  # 130 not divisible by 4
        dict(variant="no_memory"),
        dict(image_size=(60, 64)),
        dict(num_heads=0),
    ],
)
def test_invalid_top_level_values(bad):
    with pytest.raises(ValueError):
        Mem4DConfig.tiny(**bad)


def test_invalid_nested_values():
    with pytest.raises(ValueError, match="capacity"):
        PSMConfig(capacity=1)
    with pytest.raises(ValueError, match="tier_kernels"):
        PSMConfig(tier_bounds=(4, 20), tier_kernels=((1, 2, 2),))
    with pytest.raises(ValueError, match="tier_bounds"):
        PSMConfig(tier_bounds=(20, 4))
    with pytest.raises(ValueError, match="window"):
        TCAConfig(window=0)


def test_schedules():
    assert [TCAConfig.stride(k) for k in range(1, 9)] == [1, 2, 2, 4, 4, 4, 4, 8]
    psm = PSMConfig()
    assert [psm.tier(d) for d in (1, 4, 5, 20, 21, 99)] == [0, 0, 1, 1, 2, 2]
    assert Mem4DConfig.tiny().psm.reachable_tiers() == [0, 1]  # N_s = 8: distances 1..7
    assert Mem4DConfig.paper().decoder.dpt_stages() == (2, 4, 6)
    assert Mem4DConfig.small().decoder.dpt_stages() == (1, 2, 2)
    assert Mem4DConfig.tiny().decoder.dpt_stages() == (1, 1, 1)
    assert Mem4DConfig.tiny().tdm.corr_channels == 324


def test_presets_follow_the_model_table():
    tiny, small, paper = Mem4DConfig.tiny(), Mem4DConfig.small(), Mem4DConfig.paper()
    assert (tiny.encoder.depth, tiny.encoder.width, tiny.decoder.num_stages, tiny.psm.capacity) == (4, 192, 1, 8)
    assert 128 <= tiny.dim <= 192 and tiny.tca.num_layers in (1, 2)
    assert (small.encoder.depth, small.encoder.width, small.encoder.num_heads, small.dim) == (12, 384, 6, 384)
    assert (small.tca.num_layers, small.tdm.num_layers, small.psm.num_layers, small.decoder.num_stages) == (2, 2, 2, 2)
    assert small.psm.capacity == 16 and small.image_size == (192, 256)
    assert (paper.encoder.depth, paper.encoder.width, paper.encoder.num_heads) == (24, 1024, 16)
    assert (paper.dim, paper.num_heads, paper.decoder.num_stages, paper.psm.capacity) == (768, 12, 6, 100)
    assert (paper.tca.window, paper.tdm.num_past, paper.tca.num_layers, paper.tdm.num_layers, paper.psm.num_layers) == (5, 2, 4, 4, 4)


def _meta_count(cfg: Mem4DConfig) -> int:
    with torch.device("meta"):
        return Mem4D(cfg).num_parameters()


def test_presets_build_on_meta_and_report_parameter_counts(record_property, capsys):
    counts = {name: _meta_count(Mem4DConfig.preset(name)) for name in ("tiny", "small", "paper")}
    for variant in VARIANTS:
        counts[f"small/{variant}"] = _meta_count(Mem4DConfig.small(variant=variant))
    for name, n in counts.items():
        record_property(f"params[{name}]", n)
    with capsys.disabled():
        print("\nMem4D parameters: " + ", ".join(f"{k}={v / 1e6:.2f}M" for k, v in counts.items()))
    assert counts["tiny"] < 10e6
    assert 20e6 < counts["small"] < 100e6
    assert 0.5e9 < counts["paper"] < 0.9e9
    # The unified variant replaces TDM + PSM with a similar budget (within 15 %).
    full, unified = counts["small/full"], counts["small/unified"]
    assert abs(unified - full) / full < 0.15


def test_psm_compressor_is_cheap():
    with torch.device("meta"):
        model = Mem4D(Mem4DConfig.paper())
    n = sum(p.numel() for p in model.psm.compressors.parameters())
    assert n < 3e6  # a dense 768->768 (4,8,8) conv alone would be 151 M


def test_encoder_frozen_or_trainable_by_config():
    with torch.device("meta"):
        frozen = Mem4D(Mem4DConfig.tiny())
        trainable = Mem4D(Mem4DConfig.tiny(encoder=dataclasses.replace(Mem4DConfig.tiny().encoder, trainable=True)))
    assert not any(p.requires_grad for p in frozen.encoder.parameters())
    assert all(p.requires_grad for p in trainable.encoder.parameters())
    assert frozen.num_parameters(trainable_only=True) < frozen.num_parameters()


def test_variants_build_only_their_modules():
    with torch.device("meta"):
        models = {v: Mem4D(Mem4DConfig.tiny(variant=v)) for v in VARIANTS}
    present = {v: (m.tca is not None, m.tdm is not None, m.psm is not None, m.unified is not None) for v, m in models.items()}
    assert present == {
        "full": (True, True, True, False),
        "no_tdm": (True, False, True, False),
        "no_psm": (True, True, False, False),
        "no_tca": (False, True, True, False),
        "unified": (True, False, False, True),
    }
    with torch.device("meta"):
        no_motion = Mem4D(Mem4DConfig.tiny(heads=dataclasses.replace(Mem4DConfig.tiny().heads, motion=False)))
    assert no_motion.motion_head is None
