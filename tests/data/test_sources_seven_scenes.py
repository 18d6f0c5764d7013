"""7-Scenes reader: a fixture in the original layout, and the real redkitchen excerpt."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mem4d.data.sources import SevenScenesSource, reprojection_depth_errors
from test_sources_common import (
    assert_reprojects,
    holes,
    render_room_depth,
    room_image,
    room_poses,
    write_png16,
    write_rgb,
)

K_DEPTH = np.array([[585.0, 0, 320.0], [0, 585.0, 240.0], [0, 0, 1]])


def write_seven_scenes(root, scene="chess", seqs=(1, 2), T=3):
    """<scene>/seq-XX/frame-XXXXXX.{color.png,depth.png,pose.txt} + split files, as distributed.

    The first sequence has T frames, the others one.
    """
    poses = room_poses(T)
    for k, s in enumerate(seqs):
        folder = root / scene / f"seq-{s:02d}"
        for t in range(T if k == 0 else 1):
            depth = render_room_depth(K_DEPTH, poses[t], 480, 640)
            raw = depth * 1000.0
            h = holes(raw.shape, 0.05, t)
            raw[h] = 65535  # the raw dataset's "no depth"
            raw[:4] = 0
            write_png16(folder / f"frame-{t:06d}.depth.png", raw)
            write_rgb(folder / f"frame-{t:06d}.color.png", room_image(depth, t))
            np.savetxt(folder / f"frame-{t:06d}.pose.txt", poses[t], fmt="%.12e")
    (root / scene / "TrainSplit.txt").write_text("sequence1\n")
    (root / scene / "TestSplit.txt").write_text("sequence2\n")
    return poses


def test_seven_scenes_fixture_layout_conventions_and_reprojection(tmp_path):
    poses = write_seven_scenes(tmp_path)
    src = SevenScenesSource(tmp_path)
    assert src.sequences() == ["chess/seq-01", "chess/seq-02"]
    assert SevenScenesSource(tmp_path, split="test").sequences() == ["chess/seq-02"]
    assert src.num_frames("chess/seq-01") == 3
    clip = src.load("chess/seq-01", [0, 1, 2])
    assert clip.images.shape == (3, 3, 480, 640)
    torch.testing.assert_close(clip.intrinsics[0], torch.from_numpy(K_DEPTH).float())
    np.testing.assert_allclose(clip.cam2world.numpy(), poses, atol=1e-9)
    # 65535 and 0 are invalid and zeroed; the rest is millimetres
    assert not clip.valid[1][holes((480, 640), 0.05, 1)].any() and not clip.valid[:, :4].any()
    assert (clip.depth[~clip.valid] == 0).all()
    assert_reprojects(clip, [(0, 1), (0, 2), (2, 1)], median_tol=1e-3, step=3)
    assert clip.meta["frame_ids"] == ["frame-000000", "frame-000001", "frame-000002"]


def test_seven_scenes_real_redkitchen_reprojects(shared_data):
    folder = shared_data / "7scenes_redkitchen_f000-059"
    src = SevenScenesSource(folder)
    (seq,) = src.sequences()
    assert src.num_frames(seq) == 60
    clip = src.load(seq, [0, 5, 54, 59])
    assert clip.images.shape == (4, 3, 480, 640)
    valid = clip.valid.float().mean()
    assert 0.8 < valid < 0.95  # README: about 89 % valid
    d = clip.depth[clip.valid]
    assert 0.7 < float(d.min()) and float(d.max()) < 3.6  # README: 0.80-3.49 m
    torch.testing.assert_close(clip.intrinsics[0, 0, 0], torch.tensor(585.0))  # camera-intrinsics.txt
    for i, j in [(0, 1), (1, 0), (2, 3)]:  # frames 5 apart
        err = reprojection_depth_errors(clip, i, j, step=2)
        assert err.numel() > 0.5 * clip.valid[i, ::2, ::2].sum()
        assert float(err.median()) < 0.05, f"{i}->{j}: median relative error {float(err.median()):.3f}"
        assert float((err < 0.05).float().mean()) > 0.9
    # the clip pipeline's invariants hold after re-anchoring
    clip.reanchor().validate()


def test_seven_scenes_unknown_sequence_is_a_clear_error(tmp_path):
    write_seven_scenes(tmp_path, seqs=(1,), T=1)
    with pytest.raises(KeyError, match="unknown sequence"):
        SevenScenesSource(tmp_path).load("chess/seq-09", [0])
    with pytest.raises(IndexError, match="out of range"):
        SevenScenesSource(tmp_path).load("chess/seq-01", [1])
