"""`mem4d scene render/stats` on a memory written from a synthetic scene with ground truth."""

import numpy as np
import pytest
from PIL import Image

from mem4d.cli.main import main
from mem4d.data.synthetic import make_scene
from mem4d.scene import Observation, SceneMemory


@pytest.fixture(scope="module")
def memory_dir(tmp_path_factory):
    sample = make_scene(3, 8, image_size=(48, 64), dynamic=False, camera_path="handheld")
    memory = SceneMemory()
    for t in range(sample.num_frames):
        memory.write(Observation(
            t=t, rgb=sample.images[t].permute(1, 2, 0).numpy(), K=sample.intrinsics[t].double().numpy(),
            c2w=sample.cam2world[t].double().numpy(), depth=(sample.depth[t] * sample.valid[t]).numpy(),
        ))
    out = tmp_path_factory.mktemp("recon") / "scene_memory"
    memory.save(out)
    return out, sample


def test_render_at_a_stored_frame_reproduces_that_frame(memory_dir, tmp_path):
    path, sample = memory_dir
    assert main(["scene", "render", str(path.parent), "--frame", "5", "--out", str(tmp_path / "v.png")]) == 0
    rgb = np.asarray(Image.open(tmp_path / "v.png")).astype(np.float32) / 255
    depth = np.asarray(Image.open(tmp_path / "v_depth.png")).astype(np.float32) / 1000
    drawn = depth > 0
    assert drawn.mean() > 0.8
    truth = sample.images[5].permute(1, 2, 0).numpy()
    mse = ((rgb - truth)[drawn] ** 2).mean()
    assert 10 * np.log10(1 / mse) > 20  # the re-render looks like the stored frame
    gt_depth = sample.depth[5].numpy()
    both = drawn & (gt_depth > 0)
    assert np.median(np.abs(depth[both] - gt_depth[both]) / gt_depth[both]) < 0.02


def test_render_from_an_explicit_pose_equals_the_frame_pose(memory_dir, tmp_path):
    from mem4d.geometry.rotation import matrix_to_quat

    path, sample = memory_dir
    c2w = sample.cam2world[5].double()
    q = matrix_to_quat(c2w[:3, :3]).tolist()
    pose = " ".join(str(v) for v in [*c2w[:3, 3].tolist(), *q])
    K = sample.intrinsics[5]
    intr = f"{K[0, 0]},{K[1, 1]},{K[0, 2]},{K[1, 2]}"
    assert main(["scene", "render", str(path), "--pose", pose, "--intrinsics", intr, "--size", "48x64",
                 "--out", str(tmp_path / "p.png")]) == 0
    main(["scene", "render", str(path), "--frame", "5", "--out", str(tmp_path / "f.png")])
    a = np.asarray(Image.open(tmp_path / "p.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "f.png")).astype(int)
    assert np.abs(a - b).max() <= 1


def test_stats_and_errors(memory_dir, tmp_path, capsys):
    path, _ = memory_dir
    assert main(["scene", "stats", str(path)]) == 0
    assert "n_voxels" in capsys.readouterr().out
    assert main(["scene", "render", str(tmp_path / "missing"), "--frame", "0", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["scene", "render", str(path), "--frame", "99", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["scene", "render", str(path), "--pose", "1 2 3", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["scene", "render", str(path), "--frame", "1", "--pose", "0 0 0 1 0 0 0", "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()
