"""save_pretrained / from_pretrained: round trip, atomic files, actionable errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import build_tiny, make_clip

from mem4d.model.mem4d import Mem4D
from mem4d.model.pretrained import DEFAULT_DIR, WEIGHTS_NAME

pytestmark = pytest.mark.usefixtures("single_thread")


def test_round_trip(tmp_path):
    model = build_tiny(seed=6, variant="no_tca")
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = Mem4D.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    clip = make_clip(3, H=32, W=32)
    with torch.no_grad():
        assert torch.equal(model(clip).pts_world, loaded(clip).pts_world)


def test_float16_copy_loads_as_float32_and_keeps_predictions(tmp_path):
    from safetensors import safe_open

    model = build_tiny(seed=3).eval()
    model.save_pretrained(tmp_path / "half", dtype=torch.float16, about={"trained": "nowhere"})
    with safe_open(str(tmp_path / "half" / WEIGHTS_NAME), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    full_size = sum(v.numel() * 4 for v in model.state_dict().values())
    assert (tmp_path / "half" / WEIGHTS_NAME).stat().st_size < 0.55 * full_size
    raw = json.loads((tmp_path / "half" / "config.json").read_text())
    assert raw["about"] == {"trained": "nowhere"}  # provenance rides along, the loader ignores it
    loaded = Mem4D.from_pretrained(tmp_path / "half").eval()
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    clip = make_clip(3, H=32, W=32)
    with torch.no_grad():
        ref, half = model(clip).depth, loaded(clip).depth
    assert not torch.equal(ref, half)  # the weights really were rounded
    torch.testing.assert_close(half, ref, rtol=2e-2, atol=1e-3)
    with pytest.raises(ValueError, match="floating"):
        model.save_pretrained(tmp_path / "int", dtype=torch.int8)


def test_saved_files_have_the_usual_permissions(tmp_path):
    import os

    build_tiny().save_pretrained(tmp_path)
    mask = os.umask(0)
    os.umask(mask)
    for name in ("config.json", WEIGHTS_NAME):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ValueError, match="save_pretrained"):
        Mem4D.from_pretrained(tmp_path / "nothing")
    model = build_tiny()
    model.save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_NAME).write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="corrupt"):
        Mem4D.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config"):
        Mem4D.from_pretrained(tmp_path)


def test_config_and_weights_must_match(tmp_path):
    build_tiny().save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["mem4d_config"]["variant"] = "unified"
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="does not match"):
        Mem4D.from_pretrained(tmp_path)
    raw["mem4d_config"]["variant"] = "full"
    raw["mem4d_config"]["tca"]["extra"] = 1
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="extra"):
        Mem4D.from_pretrained(tmp_path)


def test_default_is_reserved_for_the_shipped_model():
    if (DEFAULT_DIR / WEIGHTS_NAME).is_file():
        assert isinstance(Mem4D.from_pretrained("default"), Mem4D)
    else:
        with pytest.raises(ValueError, match="no shipped weights"):
            Mem4D.from_pretrained("default")


def test_load_encoder_weights_wrapper(shared_reference):
    import dataclasses

    from safetensors.torch import load_file

    from mem4d.config import Mem4DConfig

    cfg = Mem4DConfig.tiny()
    cfg = dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, width=128, depth=2, num_heads=2))
    model = Mem4D(cfg)
    path = shared_reference / "cut3r_encoder_parity" / "weights.safetensors"
    model.load_encoder_weights(path)
    ref = load_file(str(path))
    assert torch.equal(model.encoder.enc_blocks[1].attn.qkv.weight, ref["enc_blocks.1.attn.qkv.weight"])
    assert not any(p.requires_grad for p in model.encoder.parameters())  # still frozen


def test_sharded_weights_round_trip_and_a_missing_shard_is_named(tmp_path):
    model = build_tiny(seed=2)
    model.save_pretrained(tmp_path / "sharded", dtype=torch.float16, max_shard_mb=2.0)
    shards = sorted(p.name for p in (tmp_path / "sharded").glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2 and not (tmp_path / "sharded" / WEIGHTS_NAME).exists()
    assert all((tmp_path / "sharded" / n).stat().st_size <= 2 * 2**20 + 65536 for n in shards)
    loaded = Mem4D.from_pretrained(tmp_path / "sharded")
    ref = build_tiny(seed=2)
    ref.save_pretrained(tmp_path / "single", dtype=torch.float16)
    single = Mem4D.from_pretrained(tmp_path / "single")
    for k, v in single.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    model.save_pretrained(tmp_path / "sharded", dtype=torch.float16)  # re-saving unsharded removes the shards
    assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == ["config.json", WEIGHTS_NAME]
    model.save_pretrained(tmp_path / "again", max_shard_mb=2.0)
    missing = sorted((tmp_path / "again").glob("model-*-of-*.safetensors"))[0]
    missing.unlink()
    with pytest.raises(ValueError, match="shards"):
        Mem4D.from_pretrained(tmp_path / "again")
