"""Safe checkpoint reading and encoder weight loading."""

import argparse
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mem4d.model.encoder import ImageEncoder
from mem4d.model.weights import (
    extract_encoder_state,
    load_encoder_weights,
    load_state_dict_file,
    unwrap_state_dict,
)


@pytest.fixture(scope="module")
def parity_dir(shared_reference) -> Path:
    return shared_reference / "cut3r_encoder_parity"


@pytest.fixture(scope="module")
def fixture_state(parity_dir):
    return load_file(parity_dir / "weights.safetensors")


def _cut3r_like(state):
    """A CUT3R-style full state dict: encoder + ray-map encoder + decoder bits."""
    full = dict(state)
    full["patch_embed_ray_map.proj.weight"] = torch.zeros(128, 6, 16, 16)
    full["enc_blocks_ray_map.0.norm1.weight"] = torch.ones(128)
    full["enc_norm_ray_map.weight"] = torch.ones(128)
    full["dec_blocks.0.norm1.weight"] = torch.ones(64)
    full["pose_token"] = torch.zeros(1, 1, 64)
    return full


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump", "pickle.dump(protocol=2)"])
def test_malicious_pickle_is_refused(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"model": {"w": torch.zeros(2)}, "args": _Evil(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2 if "protocol=2" in writer else 4)
    with pytest.raises(ValueError, match="refusing to load") as info:
        load_state_dict_file(path)
    assert "system" in str(info.value) and "safetensors" in str(info.value)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_eval_global_is_refused(tmp_path):
    class Sneaky:
        def __reduce__(self):
            return (eval, ("1+1",))

    path = tmp_path / "sneaky.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Sneaky()}, path)
    with pytest.raises(ValueError, match="builtins.eval"):
        load_state_dict_file(path)


def test_cut3r_style_pth_with_namespace_args_and_module_prefix(tmp_path, fixture_state):
    path = tmp_path / "cut3r.pth"
    wrapped = {f"module.{k}": v for k, v in _cut3r_like(fixture_state).items()}
    args = argparse.Namespace(model="ARCroco3DStereo(...)", lr=1e-4)
    torch.save({"model": wrapped, "args": args, "epoch": 7, "best_so_far": 0.1}, path)
    sd = load_state_dict_file(path)
    assert "patch_embed.proj.weight" in sd and not any(k.startswith("module.") for k in sd)
    enc = ImageEncoder(128, 2, 2)
    load_encoder_weights(enc, path)
    torch.testing.assert_close(enc.enc_norm.weight, fixture_state["enc_norm.weight"], atol=0, rtol=0)


def test_nested_state_dict_ckpt(tmp_path, fixture_state):
    path = tmp_path / "nested.ckpt"
    torch.save({"state_dict": {"model": dict(fixture_state)}, "epoch": 1}, path)
    assert set(load_state_dict_file(path)) == set(fixture_state)


def test_omegaconf_args_are_skipped_without_running_code(tmp_path, fixture_state, monkeypatch):
    """CUT3R's Hydra runs may store an OmegaConf config under 'args'; it loads as an inert stand-in."""
    mod = types.ModuleType("omegaconf.dictconfig")

    class DictConfig:
        def __init__(self, content):
            self.content = content

        def __setstate__(self, state):  # would run on a real unpickle; must not run for us
            raise AssertionError("user code ran")

    DictConfig.__module__ = "omegaconf.dictconfig"
    mod.DictConfig = DictConfig
    monkeypatch.setitem(sys.modules, "omegaconf", types.ModuleType("omegaconf"))
    monkeypatch.setitem(sys.modules, "omegaconf.dictconfig", mod)
    DictConfig.__qualname__ = "DictConfig"
    path = tmp_path / "hydra.pth"
    torch.save({"model": dict(fixture_state), "args": DictConfig({"model": "X"})}, path)
    assert "omegaconf.dictconfig.DictConfig" in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    assert set(load_state_dict_file(path)) == set(fixture_state)


def test_safetensors_roundtrip_and_bad_files(tmp_path, fixture_state):
    path = tmp_path / "w.safetensors"
    save_file({f"module.{k}": v for k, v in fixture_state.items()}, str(path))
    assert set(load_state_dict_file(path)) == set(fixture_state)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        load_state_dict_file(tmp_path / "junk.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"garbage")
    with pytest.raises(ValueError):
        load_state_dict_file(tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        (tmp_path / "w.npz").write_bytes(b"")
        load_state_dict_file(tmp_path / "w.npz")
    with pytest.raises(FileNotFoundError):
        load_state_dict_file(tmp_path / "missing.pth")


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": 1.0}}, path)
    with pytest.raises(ValueError, match="no 'model'/'state_dict'"):
        load_state_dict_file(path)


def test_extract_encoder_state_ignores_ray_map_encoder(fixture_state):
    enc_sd = extract_encoder_state(_cut3r_like(fixture_state))
    assert set(enc_sd) == set(fixture_state)
    wrapped = {f"encoder.{k}": v for k, v in fixture_state.items()}
    with pytest.raises(ValueError, match="prefix"):
        extract_encoder_state(wrapped)
    assert set(extract_encoder_state(wrapped, prefix="encoder.")) == set(fixture_state)
    assert unwrap_state_dict({"model": {"_orig_mod.a": torch.zeros(1)}}) == {"a": torch.zeros(1)}


def test_wrong_width_checkpoint_is_actionable(tmp_path, fixture_state):
    path = tmp_path / "w.safetensors"
    save_file(fixture_state, str(path))
    enc = ImageEncoder(width=192, depth=3, num_heads=3)
    with pytest.raises(ValueError) as info:
        load_encoder_weights(enc, path)
    msg = str(info.value)
    assert "width=128, depth=2" in msg and "width=192, depth=3" in msg
    assert "missing" in msg and "enc_blocks.2.norm1.weight" in msg
    assert "mis-shaped" in msg
    assert "patch_embed.proj.weight: checkpoint (128, 3, 16, 16) vs model (192, 3, 16, 16)" in msg
    # shallower model: the extra checkpoint blocks are named as unexpected
    with pytest.raises(ValueError, match="unexpected key.*enc_blocks.1"):
        load_encoder_weights(ImageEncoder(width=128, depth=1, num_heads=2), path)


def test_load_into_meta_encoder(parity_dir):
    with torch.device("meta"):
        enc = ImageEncoder(width=128, depth=2, num_heads=2)
    load_encoder_weights(enc, parity_dir / "weights.safetensors")
    assert not any(p.is_meta for p in enc.parameters())
    x = torch.from_numpy(np.load(parity_dir / "input.npy"))
    ref = torch.from_numpy(np.load(parity_dir / "output.npy"))
    with torch.no_grad():
        assert (enc.forward_normalized(x) - ref).abs().max() <= 5e-5
