"""Clip sampling: strides, mixture weights, sizes, determinism, and the Dataset plumbing."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from mem4d.data.clips import (
    ClipDataset,
    ClipSampler,
    ClipStream,
    FunctionSource,
    SyntheticSource,
    as_source,
    collate_clips,
)
from mem4d.data.sample import Sample
from mem4d.data.sources import SevenScenesSource
from mem4d.data.transforms import ClipColorJitter, sizes_for_aspect_ratios
from mem4d.geometry.rotation import axis_angle_to_matrix
from mem4d.geometry.se3 import se3_from_rt


class ToySource:
    """In-memory source: frame t of every sequence has image value t / 1000 and a distinct pose."""

    def __init__(self, name, lengths, H=24, W=40):
        self.name = name
        self.lengths = lengths
        self.H, self.W = H, W
        self.loads = 0

    def sequences(self):
        return list(self.lengths)

    def num_frames(self, sequence):
        return self.lengths[sequence]

    def load(self, sequence, indices):
        self.loads += 1
        T = len(indices)
        idx = torch.tensor(indices, dtype=torch.float64)
        R = axis_angle_to_matrix(torch.stack([0.01 * idx, 0.02 * idx + 0.3, -0.01 * idx], -1))
        cam2world = se3_from_rt(R, torch.stack([idx * 0.1 + 5, idx * 0.0 - 2, idx * 0.05], -1))
        return Sample(
            images=(idx.float() / 1000).view(T, 1, 1, 1).expand(T, 3, self.H, self.W).clone(),
            depth=torch.full((T, self.H, self.W), 2.0),
            valid=torch.ones(T, self.H, self.W, dtype=torch.bool),
            intrinsics=torch.tensor([[30.0, 0, self.W / 2], [0, 30.0, self.H / 2], [0, 0, 1]]).repeat(T, 1, 1),
            cam2world=cam2world,
            name=f"{self.name}/{sequence}",
        )


def frames_of(sample):
    return [round(v) for v in (sample.images[:, 0, 0, 0] * 1000).tolist()]


def g(seed=0):
    return torch.Generator().manual_seed(seed)


# -- ClipSampler ----------------------------------------------------------------------------------


def test_fixed_stride_and_ranges():
    s = ClipSampler(num_frames=5, stride=3)
    for k in range(50):
        idx, _ = s.sample(40, g(k))
        assert [b - a for a, b in zip(idx, idx[1:])] == [3] * 4 and 0 <= idx[0] and idx[-1] < 40
    s = ClipSampler(num_frames=4, stride=(1, 4))
    strides = set()
    for k in range(200):
        idx, _ = s.sample(100, g(k))
        gaps = {b - a for a, b in zip(idx, idx[1:])}
        assert len(gaps) == 1 and 1 <= min(gaps) <= max(gaps) <= 4  # one stride per clip
        strides |= gaps
    assert strides == {1, 2, 3, 4}


def test_random_intervals_stay_in_range_and_vary():
    s = ClipSampler(num_frames=6, stride=(1, 5), random_intervals=True)
    varied = 0
    for k in range(100):
        idx, info = s.sample(60, g(k))
        gaps = [b - a for a, b in zip(idx, idx[1:])]
        assert all(1 <= x <= 5 for x in gaps) and gaps == info["gaps"]
        varied += len(set(gaps)) > 1
    assert varied > 80


def test_strides_are_capped_to_fit_and_starts_are_uniform():
    s = ClipSampler(num_frames=4, stride=5)  # 10 frames allow stride <= 3
    idx, _ = s.sample(10, g())
    assert idx == [0, 3, 6, 9]
    starts = Counter(ClipSampler(num_frames=3, stride=2).sample(10, g(k))[0][0] for k in range(3000))
    assert sorted(starts) == list(range(6))  # 10 - 1 - 4 = 5 is the last possible start
    assert max(starts.values()) / min(starts.values()) < 1.3
    assert ClipSampler(num_frames=3, stride=2, random_start=False).sample(10, g(1))[0] == [0, 2, 4]
    rev, info = ClipSampler(num_frames=3, reverse_prob=1.0).sample(10, g())
    assert rev[0] > rev[1] > rev[2] and info["reversed"]
    with pytest.raises(ValueError, match="too short"):
        ClipSampler(num_frames=11).sample(10, g())
    with pytest.raises(ValueError, match="stride"):
        ClipSampler(num_frames=2, stride=(3, 2))


# -- ClipDataset ----------------------------------------------------------------------------------


def toy_sources():
    return {
        "a": ToySource("a", {"s1": 30, "s2": 30}),
        "b": ToySource("b", {"long": 200, "short": 3}),
        "c": ToySource("c", {"x": 12}),
    }


def test_mixture_follows_weights_and_is_deterministic():
    ds = ClipDataset(toy_sources(), weights=[0.2, 0.5, 0.3], sampler=ClipSampler(4, stride=(1, 3)),
                     sizes=[(16, 32)], length=3000, seed=7)
    counts = Counter(ds.plan(i).source_name for i in range(len(ds)))
    for name, w in zip("abc", [0.2, 0.5, 0.3]):
        assert abs(counts[name] / len(ds) - w) < 0.03
    # "short" (3 frames) can never hold a 4-frame clip
    assert all(ds.plan(i).sequence != "short" for i in range(200))
    same = ClipDataset(toy_sources(), weights=[0.2, 0.5, 0.3], sampler=ClipSampler(4, stride=(1, 3)),
                       sizes=[(16, 32)], length=3000, seed=7)
    assert [ds.plan(i).indices for i in range(50)] == [same.plan(i).indices for i in range(50)]
    other = ClipDataset(toy_sources(), weights=[0.2, 0.5, 0.3], sampler=ClipSampler(4, stride=(1, 3)),
                        sizes=[(16, 32)], length=3000, seed=8)
    assert [ds.plan(i).indices for i in range(50)] != [other.plan(i).indices for i in range(50)]
    before = [ds.plan(i).indices for i in range(50)]
    ds.set_epoch(1)
    assert [ds.plan(i).indices for i in range(50)] != before
    ds.set_epoch(0)
    assert [ds.plan(i).indices for i in range(50)] == before


def test_sequence_weighting():
    src = {"a": ToySource("a", {"big": 900, "small": 100})}
    by_frames = ClipDataset(src, sampler=ClipSampler(2), sizes=None, length=2000)
    share = sum(by_frames.plan(i).sequence == "big" for i in range(2000)) / 2000
    assert abs(share - 0.9) < 0.03
    uniform = ClipDataset(src, sampler=ClipSampler(2), sizes=None, length=2000, sequence_weighting="uniform")
    share = sum(uniform.plan(i).sequence == "big" for i in range(2000)) / 2000
    assert abs(share - 0.5) < 0.04


def test_items_are_resized_reanchored_validated_and_sized_per_group():
    sizes = [(16, 32), (32, 16), (24, 24)]
    ds = ClipDataset(toy_sources(), sampler=ClipSampler(5, stride=(2, 3)), sizes=sizes, size_group=4,
                     color_jitter=ClipColorJitter(), crop="random", length=64, seed=1)
    seen = set()
    for i in range(12):
        plan = ds.plan(i)
        clip = ds[i]
        assert clip.num_frames == 5 and clip.image_size == plan.size
        assert torch.equal(clip.cam2world[0], torch.eye(4)) and clip.cam2world.dtype == torch.float32
        assert clip.meta["dataset"] == plan.source_name and clip.meta["indices"] == plan.indices
        gaps = [b - a for a, b in zip(plan.indices, plan.indices[1:])]
        assert len(set(gaps)) == 1 and gaps[0] in (2, 3)
        seen.add(plan.size)
    assert all(ds.plan(i).size == ds.plan(4 * (i // 4)).size for i in range(64))
    assert len({ds.plan(4 * k).size for k in range(16)}) == 3
    # the frames loaded are the planned ones (images carry the frame number; no jitter here)
    plain = ClipDataset(toy_sources(), sampler=ClipSampler(5, stride=(2, 3), reverse_prob=0.5), sizes=None, length=20)
    for i in range(20):
        assert frames_of(plain[i]) == plain.plan(i).indices
    # relative poses survive re-anchoring
    toy = ToySource("t", {"q": 50})
    clip = ClipDataset([toy], sampler=ClipSampler(3, stride=4), sizes=None, length=1)[0]
    raw = toy.load("q", clip.meta["indices"]).cam2world
    rel = torch.linalg.inv(raw[0]) @ raw
    torch.testing.assert_close(clip.cam2world.double(), rel, atol=1e-5, rtol=0)


def test_dataloader_batches_and_stream(tmp_path):
    ds = ClipDataset(toy_sources(), sampler=ClipSampler(3), sizes=[(16, 32), (24, 24)], size_group=2, length=8)
    batches = list(DataLoader(ds, batch_size=2, shuffle=False, collate_fn=collate_clips))
    assert len(batches) == 4
    for b in batches:
        assert b["images"].shape[:3] == (2, 3, 3) and b["cam2world"].shape == (2, 3, 4, 4)
        assert b["dynamic_mask"] is None and len(b["name"]) == 2
    stream = iter(ClipStream(ds, epochs=2))
    items = [next(stream) for _ in range(10)]
    assert frames_of(items[0]) == frames_of(ds[0]) and items[8].meta["epoch"] == 1
    other = ClipDataset(toy_sources(), sampler=ClipSampler(3), sizes=[(8, 8)], length=1)
    with pytest.raises(ValueError, match="different"):
        collate_clips([ds[0], other[0]])


def test_adapters_accept_other_interfaces():
    class Other:
        def scenes(self):
            return ["only"]

        def frame_count(self, scene):
            return 10

        def load_clip(self, scene, indices):
            return ToySource("o", {"only": 10}).load(scene, indices)

    src = as_source(Other(), name="other")
    assert isinstance(src, FunctionSource) and src.name == "other" and src.sequences() == ["only"]
    ds = ClipDataset({"other": Other()}, sampler=ClipSampler(4, stride=3), sizes=None, length=2)
    assert frames_of(ds[0]) == [0, 3, 6, 9]
    with pytest.raises(TypeError, match="needs sequences"):
        as_source(object())
    with pytest.raises(ValueError, match="no sequence"):
        ClipDataset([ToySource("tiny", {"s": 2})], sampler=ClipSampler(3))


def test_real_seven_scenes_clips(shared_data):
    src = SevenScenesSource(shared_data / "7scenes_redkitchen_f000-059")
    ds = ClipDataset([src], sampler=ClipSampler(4, stride=(2, 5)), sizes=sizes_for_aspect_ratios((4 / 3, 16 / 9), 256),
                     length=4, seed=3)
    for i in range(2):
        clip = ds[i]
        assert clip.num_frames == 4 and clip.image_size in [(192, 256), (144, 256)]
        assert torch.equal(clip.cam2world[0], torch.eye(4))
        assert clip.valid.float().mean() > 0.7 and (clip.depth[~clip.valid] == 0).all()


def test_synthetic_scenes_mix_with_dataset_readers():
    synth = SyntheticSource(num_sequences=3, frames_per_sequence=8, image_size=(24, 32), camera_path="handheld")
    ds = ClipDataset({"synthetic": synth, "toy": ToySource("toy", {"s": 40})}, weights=[1.0, 0.0],
                     sampler=ClipSampler(3, stride=2), sizes=[(16, 16)], length=4, seed=2)
    clip = ds[0]
    assert clip.meta["dataset"] == "synthetic" and clip.image_size == (16, 16)
    assert clip.dynamic_mask is not None and clip.scene_flow is None  # strided: t -> t+1 flow no longer applies
    assert torch.equal(clip.cam2world[0], torch.eye(4))
    consecutive = synth.load(clip.meta["sequence"], [2, 3, 4])  # cached scene, no re-render
    assert consecutive.scene_flow is not None and consecutive.num_frames == 3
