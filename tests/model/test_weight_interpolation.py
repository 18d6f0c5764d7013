"""interpolate_weights: the ends are the two checkpoints, the middle is their mean, mismatches refused."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny, make_clip

from mem4d.model.weight_interpolation import interpolate_weights

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def pair():
    return build_tiny(seed=1), build_tiny(seed=2)


def test_the_ends_are_the_two_checkpoints_and_predict_as_they_do(pair):
    base, tuned = pair
    clip = make_clip(3, H=32, W=32)
    for alpha, ref in ((0.0, base), (1.0, tuned)):
        mixed = interpolate_weights(base, tuned, alpha).eval()
        for name, w in ref.state_dict().items():
            assert torch.equal(mixed.state_dict()[name], w), name
        with torch.no_grad():
            assert torch.equal(mixed(clip).pts_world, ref(clip).pts_world)


def test_the_middle_is_the_mean_of_every_floating_tensor(pair):
    base, tuned = pair
    mixed = interpolate_weights(base, tuned, 0.25).state_dict()
    a, b = base.state_dict(), tuned.state_dict()
    floating = [k for k, v in a.items() if v.is_floating_point()]
    assert floating and any(not torch.equal(a[k], b[k]) for k in floating)
    for k in floating:
        torch.testing.assert_close(mixed[k], 0.75 * a[k] + 0.25 * b[k])
    assert mixed is not a and mixed is not b


def test_different_architectures_and_bad_alphas_are_refused(pair):
    base, tuned = pair
    with pytest.raises(ValueError, match="different architectures"):
        interpolate_weights(base, build_tiny(seed=3, variant="no_tca"), 0.5)
    for alpha in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="alpha must be"):
            interpolate_weights(base, tuned, alpha)


def test_ship_script_blends_two_checkpoints_and_refuses_a_lone_alpha(pair, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from mem4d.model.mem4d import Mem4D

    base, tuned = pair
    base.save_pretrained(tmp_path / "base")
    tuned.save_pretrained(tmp_path / "tuned")
    script = Path(__file__).resolve().parents[2] / "scripts" / "ship_default_model.py"
    run = [sys.executable, str(script), "--ckpt", str(tmp_path / "tuned"), "--out", str(tmp_path / "out")]
    done = subprocess.run([*run, "--blend-with", str(tmp_path / "base"), "--alpha", "0.5"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shipped = Mem4D.from_pretrained(tmp_path / "out").state_dict()
    for k, w in base.state_dict().items():
        if w.is_floating_point():
            torch.testing.assert_close(shipped[k], 0.5 * (w + tuned.state_dict()[k]), atol=2e-3, rtol=2e-3)
    lone = subprocess.run([*run, "--alpha", "0.5"], capture_output=True, text=True)
    assert lone.returncode != 0 and "go together" in lone.stderr


def test_ship_script_records_the_refinement_settings_and_refuses_a_bad_level(pair, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from mem4d.model.mem4d import Mem4D

    pair[1].save_pretrained(tmp_path / "tuned")
    script = Path(__file__).resolve().parents[2] / "scripts" / "ship_default_model.py"
    run = [sys.executable, str(script), "--ckpt", str(tmp_path / "tuned"), "--pose-refinement", "photometric"]
    done = subprocess.run([*run, "--refine-select-after", "2", "--out", str(tmp_path / "out")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    heads = Mem4D.from_pretrained(tmp_path / "out").config.heads
    assert (heads.pose_refinement, heads.refine_select_after) == ("photometric", 2)
    assert (heads.refine_probes, heads.refine_focal, heads.loop_closure) == (False, False, False)  # the checkpoint's own
    done = subprocess.run([*run, "--refine-probes", "--refine-focal", "--loop-closure", "--out", str(tmp_path / "fast")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    heads = Mem4D.from_pretrained(tmp_path / "fast").config.heads
    assert (heads.refine_probes, heads.refine_focal, heads.loop_closure) == (True, True, True)
    bad = subprocess.run([*run, "--refine-select-after", "-1", "--out", str(tmp_path / "bad")], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "refine_select_after" in bad.stderr and not (tmp_path / "bad").exists()
