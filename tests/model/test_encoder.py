"""ImageEncoder parity with CUT3R's own encoder output and key layout."""

import json

import numpy as np
import pytest
import torch

from mem4d.layers.rope import grid_positions
from mem4d.model.encoder import ImageEncoder
from mem4d.model.weights import ENCODER_PREFIXES, load_encoder_weights


@pytest.fixture(scope="module")
def PARITY(shared_reference):
    return shared_reference / "cut3r_encoder_parity"


@pytest.fixture(scope="module")
def parity_encoder(PARITY):
    enc = ImageEncoder(width=128, depth=2, num_heads=2).eval()
    load_encoder_weights(enc, f"{PARITY}/weights.safetensors")
    return enc


@pytest.fixture(scope="module")
def parity_io(PARITY):
    return torch.from_numpy(np.load(f"{PARITY}/input.npy")), torch.from_numpy(np.load(f"{PARITY}/output.npy"))


def _assert_parity(out, ref):
    diff = (out - ref).abs()
    assert out.shape == ref.shape == (2, 24, 128)
    assert diff.max().item() <= 5e-5, diff.max().item()
    assert diff.mean().item() <= 5e-6, diff.mean().item()


def test_parity_with_cut3r_normalized_input(parity_encoder, parity_io):
    x, ref = parity_io
    with torch.no_grad():
        _assert_parity(parity_encoder.forward_normalized(x), ref)


def test_parity_with_cut3r_unit_range_input(parity_encoder, parity_io):
    x, ref = parity_io
    with torch.no_grad():
        _assert_parity(parity_encoder((x + 1) / 2), ref)


def test_parity_per_image_and_fp16_reference_is_different(parity_encoder, parity_io, PARITY):
    x, ref = parity_io
    with torch.no_grad():
        out1 = parity_encoder.forward_normalized(x[1:])
    _assert_parity(torch.cat([ref[:1], out1]), ref)
    # Sanity check on the fixture: CUT3R's fp16 q/k rounding moves the output by ~2e-3.
    fp16 = torch.from_numpy(np.load(f"{PARITY}/output_fp16qk.npy"))
    assert (fp16 - ref).abs().max() > 1e-3


def test_positions_match_cut3r(parity_encoder, PARITY):
    expected = np.load(f"{PARITY}/positions.npy")
    np.testing.assert_array_equal(parity_encoder.positions(64, 96).numpy(), expected)
    np.testing.assert_array_equal(grid_positions(4, 6).numpy(), expected)
    assert parity_encoder.grid_size(64, 96) == (4, 6) and parity_encoder.patch_size == 16


def test_fixture_keys_load_strictly(PARITY):
    from safetensors.torch import load_file

    enc = ImageEncoder(width=128, depth=2, num_heads=2)
    manifest = json.load(open(f"{PARITY}/weights_manifest.json"))
    assert list(enc.state_dict()) == [e["key"] for e in manifest]  # same keys, same order
    enc.load_state_dict(load_file(f"{PARITY}/weights.safetensors"), strict=True)


def test_rejects_bad_image_size():
    enc = ImageEncoder(width=64, depth=1, num_heads=1)
    with pytest.raises(ValueError, match="multiples of 16"):
        enc(torch.rand(1, 3, 60, 96))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        enc(torch.rand(3, 64, 96))


def _encoder_entries(path):
    entries = json.load(open(path))
    return {e["key"]: e for e in entries if e["key"].startswith(ENCODER_PREFIXES)}


@pytest.mark.parametrize("manifest", ["cut3r_state_dict_manifest.json", "cut3r_224_linear_state_dict_manifest.json"])
def test_paper_encoder_matches_cut3r_manifest(manifest, shared_reference):
    with torch.device("meta"):
        enc = ImageEncoder(width=1024, depth=24, num_heads=16)
    ours = enc.state_dict()
    theirs = _encoder_entries(shared_reference / manifest)
    assert len(theirs) == 2 + 24 * 12 + 2
    assert set(theirs) == set(ours), (set(theirs) ^ set(ours))
    for key, entry in theirs.items():
        assert list(ours[key].shape) == entry["shape"], key
        assert str(ours[key].dtype).removeprefix("torch.") == entry["dtype"], key
    # the ray-map encoder of CUT3R shares a name stem but is not ours
    all_keys = {e["key"] for e in json.load(open(shared_reference / manifest))}
    assert "patch_embed_ray_map.proj.weight" in all_keys and "patch_embed_ray_map.proj.weight" not in theirs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_on_cuda_without_tf32(parity_io, PARITY):
    x, ref = parity_io
    enc = ImageEncoder(width=128, depth=2, num_heads=2).cuda().eval()
    load_encoder_weights(enc, PARITY / "weights.safetensors")
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            out = enc.forward_normalized(x.cuda()).cpu()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out_bf16 = enc.forward_normalized(x.cuda()).float().cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    _assert_parity(out, ref)
    assert (out_bf16 - ref).abs().max() < 0.25  # bf16 autocast runs; loose sanity bound
