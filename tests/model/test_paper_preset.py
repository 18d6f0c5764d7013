"""``Mem4DConfig.paper()`` and the ``paper-stage*`` recipes are the paper (issue 13 item 2); the
project's extras are one switch; the paper preset, built on the meta device, reports its
parameters beside the paper's component list."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mem4d.config import Mem4DConfig
from mem4d.data.synthetic import make_scene
from mem4d.losses.objective import LossWeights, Mem4DObjective, Targets
from mem4d.model.mem4d import Mem4D
from mem4d.model.paper_components import PAPER_COMPONENTS, component_rows, component_table
from mem4d.train.recipe import Recipe
from mem4d.train.trainer import build_model

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EQ10 = ("conf_world", "conf_cam", "abs_rot", "abs_trans", "abs_fov", "rel_rot", "rel_trans")


def test_the_paper_preset_builds_only_what_the_paper_describes():
    cfg = Mem4DConfig.paper()
    assert cfg.variant == "full" and not cfg.heads.motion
    assert cfg.heads.camera_pose == "absolute" and cfg.heads.pose_refinement == "none"
    assert not cfg.psm.fuse_tokens and not cfg.psm.detach_input  # E_p trained end to end
    assert cfg.tdm.input == "encoder" and cfg.psm.compressor == "separable"
    assert (cfg.tca.window, cfg.tdm.num_past, cfg.psm.capacity, cfg.dim) == (5, 2, 100, 768)
    with torch.device("meta"):
        model = Mem4D(cfg)
    assert model.motion_head is None and model.unified is None
    assert Mem4DConfig.preset("paper") == cfg


def test_the_extras_are_one_switch():
    plain, extras = Mem4DConfig.paper(), Mem4DConfig.paper(extras=True)
    assert extras.heads.motion and extras == dataclasses.replace(plain, heads=dataclasses.replace(plain.heads, motion=True))
    with torch.device("meta"):
        assert Mem4D(extras).motion_head is not None


@pytest.mark.parametrize("name", ["paper-stage1.yaml", "paper-stage2.yaml"])
def test_the_paper_recipes_build_the_paper_model_with_eq10(name):
    recipe = Recipe.from_yaml(CONFIGS / name)
    with torch.device("meta"):
        model = build_model(recipe)
    assert model.config == dataclasses.replace(Mem4DConfig.paper(), image_size=(384, 512))
    assert not any(p.requires_grad for p in model.encoder.parameters())  # frozen, as in the paper
    w = recipe.loss
    assert (w.alpha, w.abs_pose, w.rel_pose) == (0.2, 1.0, 1.0)
    longest = recipe.data.max_frames or recipe.data.num_frames
    assert recipe.data.num_frames == 11 and longest in (11, 48)
    assert model.config.psm.max_distance == 47  # the stage-2 clips' longest distance


@pytest.mark.parametrize("motion", [False, True])
def test_without_the_motion_head_the_objective_is_eq10(motion):
    """The paper preset's switch on a tiny model: with the head off the loss is Eq. 10 term by
    term (ground truth with dynamic masks is there, and ignored); with it on, the motion term adds."""
    torch.manual_seed(0)
    tiny = Mem4DConfig.tiny()
    model = Mem4D(dataclasses.replace(tiny, heads=dataclasses.replace(tiny.heads, motion=motion))).eval()
    sample = make_scene(seed=3, num_frames=3, image_size=(32, 48))
    targets = Targets.from_samples([sample])
    assert targets.dynamic_mask is not None
    with torch.no_grad():
        pred = model(sample.images[None])
    total, terms = Mem4DObjective(LossWeights())(pred, targets)
    eq10 = sum(terms[k] for k in EQ10)
    assert ("motion" in terms) == motion
    expected = eq10 + LossWeights().motion * terms["motion"] if motion else eq10
    torch.testing.assert_close(total, expected)


def test_paper_preset_on_meta_reports_its_parameters_beside_the_paper_components(capsys):
    with torch.device("meta"):
        model = Mem4D(Mem4DConfig.paper())
    rows = component_rows(model)
    assert [r[0] for r in rows] == [c.name for c in PAPER_COMPONENTS]  # no extra module
    assert sum(r[-1] for r in rows) == model.num_parameters()
    params = {r[0]: r[-1] for r in rows}
    assert 303e6 < params["Image encoder"] < 304e6  # ViT-L: 24 x 12.6 M + patch embed + norm
    assert params["Encoder-to-memory projection"] == 1024 * 768 + 768
    assert 80e6 < params["Fusion decoder"] < 90e6  # 12 blocks of ~7.1 M (6 stages x 2) + camera token
    assert all(n > 0 for n in params.values())
    with capsys.disabled():
        print("\n" + component_table(model))
    with torch.device("meta"):
        extras = component_rows(Mem4D(Mem4DConfig.paper(extras=True)))
    assert extras[-1][0].startswith("motion head") and extras[-1][-1] > 0
