import math

import pytest
import torch
from torch import nn

from mem4d.train.optim import build_scheduler, parameter_groups, warmup_cosine
from mem4d.train.recipe import Recipe, apply_override


def test_shipped_recipes_parse(tmp_path):
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert {p.name for p in configs} >= {"tiny-synthetic.yaml", "small-synthetic.yaml", "paper-stage1.yaml", "paper-stage2.yaml"}
    for path in configs:
        recipe = Recipe.from_yaml(path)
        assert recipe.train.steps > 0 and recipe.model.preset in {"tiny", "small", "paper"}
    stage2 = Recipe.from_yaml(Path(configs[0]).parent / "paper-stage2.yaml")
    assert (stage2.data.num_frames, stage2.data.max_frames) == (11, 48)
    assert Recipe.from_yaml(Path(configs[0]).parent / "paper-stage1.yaml").data.num_frames == 11


def test_overrides_are_parsed_as_yaml_scalars_not_code(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  steps: 5\n")
    recipe = Recipe.from_yaml(path, ["train.steps=7", "train.lr=1e-4", "data.image_size=[32, 48]", "model.preset=small"])
    assert recipe.train.steps == 7 and recipe.train.lr == pytest.approx(1e-4)
    assert recipe.data.image_size == (32, 48) and recipe.model.preset == "small"
    raw = {}
    apply_override(raw, "model.overrides=__import__('os').system('echo hacked')")
    assert raw["model"]["overrides"] == "__import__('os').system('echo hacked')"  # a plain string


def test_unknown_recipe_keys_are_rejected(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  stepz: 5\n")
    with pytest.raises(ValueError, match="stepz"):
        Recipe.from_yaml(path)
    with pytest.raises(ValueError, match="key=value"):
        Recipe.from_yaml(tmp_path / "r.yaml", ["train.steps"])
    with pytest.raises(FileNotFoundError):
        Recipe.from_yaml(tmp_path / "missing.yaml")


def test_no_weight_decay_on_norms_biases_and_tokens():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.norm = nn.LayerNorm(4)
            self.camera_token = nn.Parameter(torch.zeros(1, 1, 4))

    decay, no_decay = parameter_groups(Net(), 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) == 1 and decay["params"][0].shape == (4, 4)
    assert len(no_decay["params"]) == 4  # lin.bias, norm.weight, norm.bias, camera_token


def test_lr_scale_moves_named_modules_slower_and_follows_the_schedule():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Linear(4, 4)
            self.head = nn.Linear(4, 2)

    from mem4d.train.optim import build_optimizer

    net = Net()
    opt = build_optimizer(net, 1e-3, 0.1, lr_scale={"trunk": 0.1})
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(net.trunk.weight)] == pytest.approx(1e-4) and lr_of[id(net.trunk.bias)] == pytest.approx(1e-4)
    assert lr_of[id(net.head.weight)] == pytest.approx(1e-3)
    sched = build_scheduler(opt, 10, 0, 0.0)
    for _ in range(5):
        opt.step()
        sched.step()
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[id(net.trunk.weight)] / lrs[id(net.head.weight)] == pytest.approx(0.1)  # one schedule, two scales
    with pytest.raises(ValueError, match="names no module"):
        build_optimizer(net, 1e-3, 0.1, lr_scale={"decoder": 0.1})
    recipe = Recipe.from_dict({"train": {"lr_scale": {"trunk": 0.5}}})
    assert recipe.train.lr_scale == {"trunk": 0.5}


def test_warmup_then_cosine():
    assert warmup_cosine(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, 100, 10, 0.1) == pytest.approx(0.1)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = build_scheduler(opt, 20, 4, 0.0)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0]) and lrs[-1] < 0.1 and max(lrs) == pytest.approx(2.0)


def test_mixture_batches_read_cut3r_layout_data(tmp_path):
    from mem4d.data.cut3r_layout import write_scene
    from mem4d.data.synthetic import make_scene
    from mem4d.train.batches import make_batches
    from mem4d.train.recipe import DataRecipe

    for seed in (0, 1):
        write_scene(make_scene(seed, 8, image_size=(40, 56)), tmp_path, f"scene{seed}")
    recipe = DataRecipe(source="mixture", image_size=(32, 48), num_frames=3,
                        datasets=[{"reader": "cut3r", "root": str(tmp_path), "weight": 1.0}])
    batches = make_batches(recipe, batch_size=2)
    clips = batches.batch(0)
    assert len(clips) == 2 and all(c.images.shape == (3, 3, 32, 48) for c in clips)
    again = make_batches(recipe, batch_size=2).batch(0)
    assert all(torch.equal(a.images, b.images) for a, b in zip(clips, again))  # resumable: same step, same data
    with pytest.raises(ValueError, match="datasets"):
        make_batches(DataRecipe(source="mixture"), 2)


def test_camera_speed_range_is_drawn_per_clip_deterministically():
    from mem4d.train.batches import SyntheticBatches

    recipe = Recipe.from_dict({"data": {"image_size": [16, 16], "camera_speed": [1.0, 4.0]}}).data
    batches = SyntheticBatches(recipe, batch_size=3)
    speeds = [batches.camera_speed(step, i) for step in range(20) for i in range(3)]
    assert all(1.0 <= s <= 4.0 for s in speeds) and max(speeds) - min(speeds) > 1.5
    assert speeds == [SyntheticBatches(recipe, 3).camera_speed(step, i) for step in range(20) for i in range(3)]
    # the drawn speed reaches the generator: faster clips travel further in the same frames
    fast, slow = (
        SyntheticBatches(Recipe.from_dict({"data": {"image_size": [16, 16], "camera_speed": [v, v]}}).data, 1).batch(0)[0]
        for v in (3.0, 1.0)
    )
    assert fast.meta["camera_speed"] == 3.0 and slow.meta["camera_speed"] == 1.0
    with pytest.raises(ValueError, match="camera_speed"):
        SyntheticBatches(Recipe.from_dict({"data": {"camera_speed": [2.0, 1.0]}}).data, 1).camera_speed(0, 0)


def test_loop_frames_reaches_the_generator():
    from mem4d.train.batches import SyntheticBatches

    def first_loop(loop_frames):
        data = {"image_size": [16, 16], "num_frames": 4, "loop_frames": loop_frames}
        batches = SyntheticBatches(Recipe.from_dict({"data": data}).data, 1)
        for step in range(40):
            s = batches.batch(step)[0]
            if s.meta["camera_path"] == "loop":
                return s
        raise AssertionError("no loop clip in 40 steps")

    assert first_loop(48).meta["camera"]["loop_frames"] == 48
    assert first_loop(None).meta["camera"]["loop_frames"] == 4


def test_the_training_size_becomes_the_models_default_input_size():
    from mem4d.train.trainer import build_model

    recipe = Recipe.from_dict({"model": {"preset": "tiny"}, "data": {"image_size": [32, 48]}})
    assert build_model(recipe).config.image_size == (32, 48)
    recipe = Recipe.from_dict({"model": {"preset": "tiny", "overrides": {"image_size": [64, 64]}}, "data": {"image_size": [32, 48]}})
    assert build_model(recipe).config.image_size == (64, 64)


def test_init_from_applies_overrides_that_keep_the_weights(tmp_path):
    from mem4d.config import Mem4DConfig
    from mem4d.model.mem4d import Mem4D
    from mem4d.train.trainer import build_model

    torch.manual_seed(0)
    Mem4D(Mem4DConfig.tiny()).save_pretrained(tmp_path / "base")
    model_recipe = {"init_from": str(tmp_path / "base"), "overrides": {"heads": {"camera_pose": "chained"}}}
    model = build_model(Recipe.from_dict({"model": model_recipe}))
    assert model.config.heads.camera_pose == "chained"
    base = Mem4D.from_pretrained(tmp_path / "base")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in base.state_dict().items())
    with pytest.raises(ValueError, match="shapes"):
        build_model(Recipe.from_dict({"model": {"init_from": str(tmp_path / "base"), "overrides": {"dim": 64}}}))
