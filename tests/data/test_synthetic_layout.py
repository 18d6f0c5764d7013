"""The CUT3R on-disk layout: write a synthetic clip, read it back, get the same Sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mem4d.data.cut3r_layout import list_frames, read_scene, write_scene
from mem4d.data.synthetic import make_scene


@pytest.fixture(scope="module")
def sample():
    return make_scene(21, 4, (24, 40), num_objects=2)


def test_round_trip(tmp_path, sample):
    path = write_scene(sample, tmp_path, "clip", scene_flow=True)
    assert path == tmp_path / "clip"
    assert list_frames(path) == ["000000", "000001", "000002", "000003"]
    back = read_scene(path)
    back.validate()
    assert back.name == sample.name and back.meta["seed"] == 21
    assert (back.images - sample.images).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit PNG
    assert torch.equal(back.depth, sample.depth) and torch.equal(back.valid, sample.valid)
    torch.testing.assert_close(back.cam2world, sample.cam2world, atol=1e-6, rtol=0)
    torch.testing.assert_close(back.intrinsics, sample.intrinsics)
    assert torch.equal(back.dynamic_mask, sample.dynamic_mask)
    assert torch.equal(back.instance_ids, sample.instance_ids)
    torch.testing.assert_close(back.scene_flow, sample.scene_flow)
    sub = read_scene(path, frames=[1, 3])
    assert sub.num_frames == 2 and torch.allclose(sub.cam2world[0], torch.eye(4), atol=1e-6)


def test_write_is_atomic_and_refuses_to_overwrite(tmp_path, sample):
    write_scene(sample, tmp_path, "clip")
    with pytest.raises(FileExistsError):
        write_scene(sample, tmp_path, "clip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]
    broken = sample.slice(slice(0, 2))
    broken.instance_ids = torch.full_like(broken.instance_ids, 70000)  # not storable in 16 bits
    with pytest.raises(ValueError):
        write_scene(broken, tmp_path, "bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]  # no partial folder left
    write_scene(sample.slice(slice(0, 2)), tmp_path, "clip", overwrite=True)
    assert list_frames(tmp_path / "clip") == ["000000", "000001"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]


def test_reader_without_optional_folders(tmp_path, sample):
    """A minimal CUT3R scene (rgb, depth, cam only, arbitrary world frame) reads and re-anchors."""
    path = write_scene(sample, tmp_path, "clip")
    import shutil

    for sub in ("dynamic_mask", "instance"):
        shutil.rmtree(path / sub)
    (path / "meta.json").unlink()
    shift = np.eye(4)
    shift[:3, 3] = [1.0, 2.0, 3.0]
    for name in list_frames(path):
        cam = dict(np.load(path / "cam" / f"{name}.npz"))
        np.savez(path / "cam" / f"{name}.npz", pose=shift @ cam["pose"], intrinsics=cam["intrinsics"])
    back = read_scene(path)
    assert back.dynamic_mask is None and back.instance_ids is None and back.name == "clip"
    torch.testing.assert_close(back.cam2world, sample.cam2world, atol=1e-5, rtol=0)
    raw = read_scene(path, reanchor=False)
    assert torch.allclose(raw.cam2world[0, :3, 3], torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(FileNotFoundError):
        read_scene(tmp_path / "nope")
