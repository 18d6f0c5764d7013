"""The CUT3R-processed layout as a training source: written by `mem4d synth`'s writer, read back."""

import numpy as np
import torch

from mem4d.data.cut3r_layout import write_scene
from mem4d.data.sources import make_source, reprojection_depth_errors
from mem4d.data.synthetic import make_scene


def test_cut3r_layout_reads_back_with_consistent_geometry(tmp_path):
    sample = make_scene(4, 6, image_size=(48, 64), dynamic=True, camera_path="handheld")
    write_scene(sample, tmp_path / "train", "scene_a")
    write_scene(make_scene(5, 4, image_size=(48, 64)), tmp_path / "train", "scene_b")
    source = make_source("cut3r", tmp_path)
    assert source.sequences() == ["train/scene_a", "train/scene_b"]
    assert source.num_frames("train/scene_a") == 6
    clip = source.load("train/scene_a", [1, 3, 5]).reanchor().validate()
    torch.testing.assert_close(clip.depth, sample.depth[[1, 3, 5]] * sample.valid[[1, 3, 5]], atol=1e-6, rtol=0)
    assert clip.dynamic_mask is not None and torch.equal(clip.dynamic_mask, sample.dynamic_mask[[1, 3, 5]])
    errors = reprojection_depth_errors(clip, 0, 2)
    assert len(errors) > 100 and float(np.median(errors.numpy())) < 1e-3


def test_a_single_scene_folder_is_one_sequence(tmp_path):
    write_scene(make_scene(6, 3, image_size=(32, 48)), tmp_path, "only")
    source = make_source("cut3r", tmp_path / "only")
    assert source.sequences() == ["."] and source.load(".", [0, 2]).num_frames == 2
