"""Mixed training sizes and aspect ratios (`data.sizes`) and the realistic look (`data.appearance`)
in synthetic training batches: deterministic per (seed, step, rank), within the range, multiples of
16, on budget, the same after a resume; validation stays at `data.image_size`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mem4d.train.batches import SyntheticBatches, make_batches
from mem4d.train.recipe import Recipe, SizeRecipe, parse_aspect

ASPECTS = ["4:3", "16:9", "1:1", "3:4", "9:16"]


def _data(**overrides):
    raw = {"image_size": [48, 64], "num_frames": 4, "max_frames": 12, "seed": 3, **overrides}
    return Recipe.from_dict({"data": raw}).data


def test_sizes_are_off_by_default():
    data = _data()
    assert data.sizes == SizeRecipe() and data.sizes.long_side is None and data.appearance is None
    batches = SyntheticBatches(data, 2)
    for step in range(10):
        T, H, W = batches.clip_shape(step)
        assert (H, W) == (48, 64) and T == batches.num_frames(step)


def test_size_draws_cover_the_aspects_within_range_in_multiples_of_16():
    data = _data(sizes={"long_side": [64, 256], "aspects": ASPECTS})
    batches = SyntheticBatches(data, 2)
    shapes = [batches.clip_shape(step) for step in range(300)]
    ratios = set()
    longs = set()
    for T, H, W in shapes:
        assert H % 16 == 0 and W % 16 == 0 and H >= 32 and W >= 32
        assert 64 <= max(H, W) <= 256
        longs.add(max(H, W))
        ratios.add(round(W / H, 3))
        assert 4 <= T <= 12  # without a budget the length is drawn as before
    assert {1.0} <= ratios and any(r > 1.5 for r in ratios) and any(r < 0.7 for r in ratios)
    assert any(1.2 < r < 1.4 for r in ratios) and any(0.7 < r < 0.8 for r in ratios)
    assert len(longs) == (256 - 64) // 16 + 1  # every long side in the range comes up
    # each aspect is the closest to what was asked: e.g. a 16:9 draw of long side 256 is 144x256
    for T, H, W in shapes:
        best = min(ASPECTS, key=lambda a: abs(parse_aspect(a)[0] / parse_aspect(a)[1] - W / H))
        w, h = parse_aspect(best)
        assert abs(min(H, W) - max(H, W) * min(w, h) / max(w, h)) <= 8 or min(H, W) == 32


def test_token_budget_keeps_frames_times_tokens_about_constant():
    data = _data(max_frames=24, sizes={"long_side": [64, 256], "aspects": ASPECTS, "token_budget": 480})
    batches = SyntheticBatches(data, 2)
    costs = []
    for step in range(200):
        T, H, W = batches.clip_shape(step)
        tokens = (H // 16) * (W // 16)
        assert 2 <= T <= 24
        if 2 < T < 24:  # not clamped: within one clip's tokens of the budget
            assert 480 - tokens < T * tokens <= 480
            costs.append(T * tokens)
        if tokens >= 240:
            assert T == 2  # the largest sizes get the shortest clips
    assert len(costs) > 50 and max(costs) / min(costs) < 1.5
    # a per-frame overhead counts like tokens of every frame
    over = SyntheticBatches(_data(max_frames=24, sizes={**data.sizes.__dict__, "frame_overhead": 48}), 2)
    for step in range(100):
        T, H, W = over.clip_shape(step)
        assert T == max(2, min(24, 480 // ((H // 16) * (W // 16) + 48)))
    # the batch has the drawn shape, one size for all clips of a step
    step = next(s for s in range(50) if batches.clip_shape(s)[0] <= 4)
    T, H, W = batches.clip_shape(step)
    clips = batches.batch(step)
    assert all(c.images.shape == (T, 3, H, W) for c in clips)


def test_size_draws_are_deterministic_per_rank_and_survive_a_resume():
    data = _data(sizes={"long_side": [64, 192], "aspects": ASPECTS, "token_budget": 400})
    run = SyntheticBatches(data, 2, rank=0)
    forward = [run.clip_shape(s) for s in range(40)]
    resumed = SyntheticBatches(data, 2, rank=0)  # a new process resuming at step 20
    assert [resumed.clip_shape(s) for s in range(20, 40)] == forward[20:]
    assert [run.clip_shape(s) for s in reversed(range(40))] == forward[::-1]
    other_rank = [SyntheticBatches(data, 2, rank=1).clip_shape(s) for s in range(40)]
    assert other_rank != forward  # ranks draw their own sizes
    other_seed = [SyntheticBatches(_data(seed=4, sizes=data.sizes.__dict__), 2).clip_shape(s) for s in range(40)]
    assert other_seed != forward


def test_default_fraction_keeps_the_recipe_size_on_that_share_of_steps_and_nothing_else_moves():
    sizes = {"long_side": [64, 192], "aspects": ASPECTS, "token_budget": 400}
    plain = SyntheticBatches(_data(sizes=sizes), 2)
    half = SyntheticBatches(_data(sizes={**sizes, "default_fraction": 0.5}), 2)
    steps = range(400)
    kept = [s for s in steps if half.image_size(s) == (48, 64)]
    drawn = [s for s in steps if plain.image_size(s) == (48, 64)]  # the range itself rarely gives 48x64
    assert 0.4 < (len(kept) - len(drawn)) / len(steps) < 0.6
    # every other step has exactly the size it had without the option (the draws are not shifted)
    assert all(half.image_size(s) == plain.image_size(s) for s in steps if s not in kept)
    assert all(half.clip_shape(s)[0] == 12 for s in kept)  # the budget still sets the length: 400 // 12, capped
    every = SyntheticBatches(_data(sizes={**sizes, "default_fraction": 1.0}), 2)
    assert all(every.image_size(s) == (48, 64) for s in steps)


def test_validation_stays_at_the_recipe_size_and_look():
    data = _data(sizes={"long_side": [64, 128]}, appearance="realistic", val_scenes=2, val_frames=3)
    val = SyntheticBatches(data, 2).validation()
    assert len(val) == 2 and all(v.images.shape == (3, 3, 48, 64) for v in val)
    assert all("appearance" not in v.meta for v in val)


def test_appearance_reaches_the_generator():
    plain = SyntheticBatches(_data(num_frames=2, max_frames=None), 1).batch(0)[0]
    real = SyntheticBatches(_data(num_frames=2, max_frames=None, appearance="realistic"), 1).batch(0)[0]
    parts = SyntheticBatches(_data(num_frames=2, max_frames=None, appearance={"jpeg": False}), 1).batch(0)[0]
    assert "appearance" not in plain.meta and real.meta["appearance"]["parts"]["jpeg"] is True
    assert parts.meta["appearance"]["parts"]["jpeg"] is False
    assert parts.meta["appearance"]["camera"]["jpeg_quality"] is None
    assert not torch.equal(plain.images, real.images)


@pytest.mark.parametrize(
    "sizes, match",
    [
        ({"long_side": [60, 128]}, "multiples of 16"),
        ({"long_side": [128, 64]}, "min <= max"),
        ({"long_side": [16, 64]}, "32 <= min"),
        ({"long_side": 128}, r"\[min, max\]"),
        ({"long_side": [64, 128], "aspects": [243]}, "quote"),
        ({"long_side": [64, 128], "aspects": ["wide"]}, "width:height"),
        ({"long_side": [64, 128], "aspects": []}, "at least one"),
        ({"long_side": [64, 128], "token_budget": 0}, "token_budget"),
        ({"long_side": [64, 128], "frame_overhead": -1}, "frame_overhead"),
        ({"long_side": [64, 128], "default_fraction": 1.5}, "default_fraction"),
        ({"long_side": [64, 128], "default_fraction": True}, "default_fraction"),
    ],
)
def test_bad_sizes_are_refused_when_the_recipe_is_read(sizes, match):
    with pytest.raises(ValueError, match=match):
        _data(sizes=sizes)


@pytest.mark.parametrize("value", [1.5, -0.1, "half", True])
def test_a_bad_appearance_fraction_is_refused_when_the_recipe_is_read(value):
    with pytest.raises(ValueError, match=r"data.appearance_fraction must be a number in \[0, 1\]"):
        _data(appearance="realistic", appearance_fraction=value)
    assert _data(appearance="realistic", appearance_fraction=0).appearance_fraction == 0.0


def test_bad_appearance_and_mixture_with_sizes_are_refused_early(tmp_path):
    with pytest.raises(ValueError, match="appearance"):
        make_batches(_data(appearance="cinematic"), 2)
    mixture = {"source": "mixture", "datasets": [{"reader": "cut3r", "root": str(tmp_path)}]}
    data = _data(sizes={"long_side": [64, 128]}, **mixture)
    with pytest.raises(ValueError, match="synthetic only"):
        make_batches(data, 2)


def test_realistic_recipe_reads_quoted_aspects_from_yaml():
    path = Path(__file__).resolve().parents[2] / "configs" / "realistic-tiny.yaml"
    recipe = Recipe.from_yaml(path)
    sizes = recipe.data.sizes
    assert sizes.long_side == (64, 192) and sizes.token_budget and set(sizes.aspects) >= {"4:3", "16:9", "9:16"}
    assert recipe.data.appearance == "realistic" and recipe.data.loop_frames == 48
    assert tuple(recipe.data.camera_speed) == (1.0, 3.0)


def test_appearance_fraction_mixes_the_looks_per_clip_deterministically():
    data = _data(num_frames=2, max_frames=None, appearance="realistic", appearance_fraction=0.5)
    batches = SyntheticBatches(data, 4)
    looks = [batches.appearance(step, i) for step in range(25) for i in range(4)]
    realistic = sum(a == "realistic" for a in looks)
    assert 30 < realistic < 70 and all(a in ("realistic", None) for a in looks)
    assert looks == [SyntheticBatches(data, 4).appearance(step, i) for step in range(25) for i in range(4)]
    step = next(s for s in range(25) if {batches.appearance(s, i) for i in range(4)} == {"realistic", None})
    clips = batches.batch(step)
    assert {("appearance" in c.meta) for c in clips} == {True, False}
    assert SyntheticBatches(_data(appearance="realistic"), 2).appearance(0, 0) == "realistic"  # default fraction 1


def test_closeup_fraction_films_that_share_of_the_clips_closeup_and_leaves_the_others_as_drawn():
    data = _data(num_frames=2, max_frames=None, closeup_fraction=0.4)
    batches = SyntheticBatches(data, 4)
    paths = [batches.camera_path(step, i) for step in range(25) for i in range(4)]
    assert 20 < paths.count("closeup") < 60 and set(paths) == {"closeup", None}
    assert paths == [SyntheticBatches(data, 4).camera_path(step, i) for step in range(25) for i in range(4)]
    step = next(s for s in range(25) if {batches.camera_path(s, i) for i in range(4)} == {"closeup", None})
    clips, plain = batches.batch(step), SyntheticBatches(_data(num_frames=2, max_frames=None), 4).batch(step)
    for i, (clip, other) in enumerate(zip(clips, plain)):
        if batches.camera_path(step, i) is None:  # the same scene as a recipe without close-ups draws
            assert torch.equal(clip.images, other.images)
        else:
            assert clip.meta["camera_path"] == "closeup" and other.meta["camera_path"] != "closeup"
    assert SyntheticBatches(_data(), 2).camera_path(0, 0) is None  # default fraction 0
    with pytest.raises(ValueError, match=r"data.closeup_fraction must be a number in \[0, 1\]"):
        _data(closeup_fraction=2.0)
