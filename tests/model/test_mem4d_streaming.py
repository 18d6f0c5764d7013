"""The strict streaming contract: step is the only per-frame path and the state is all the memory."""

from __future__ import annotations

import pytest
import torch
from conftest import make_clip

from mem4d.model.outputs import FrameOutput, SequenceOutput
from mem4d.model.state import StreamState

T = 7  # > TCA window + 1 and reaches the second PSM tier of the tiny preset (N_s = 8)

pytestmark = pytest.mark.usefixtures("single_thread")


def _assert_frames_equal(a: FrameOutput, b: FrameOutput, atol: float = 0.0) -> None:
    for name, x in a.tensors().items():
        y = getattr(b, name)
        if atol == 0.0:
            assert torch.equal(x, y), name
        else:
            torch.testing.assert_close(x, y, atol=atol, rtol=atol, msg=name)


def _run(model, clip, state=None):
    state = state or model.init_state(clip.shape[0], tuple(clip.shape[-2:]))
    outs = []
    with torch.no_grad():
        for t in range(clip.shape[1]):
            out, state = model.step(clip[:, t], state)
            outs.append(out)
    return outs, state


def test_step_equals_forward(tiny_model):
    clip = make_clip(T)
    outs, _ = _run(tiny_model, clip)
    with torch.no_grad():
        seq = tiny_model(clip)
    assert isinstance(seq, SequenceOutput) and len(seq) == T
    for t in range(T):
        _assert_frames_equal(outs[t], seq[t], atol=1e-6)


def test_causality(tiny_model):
    clip = make_clip(T)
    other = clip.clone()
    cut = 3
    other[:, cut + 1:] = torch.rand_like(other[:, cut + 1:])
    a, _ = _run(tiny_model, clip)
    b, _ = _run(tiny_model, other)
    for t in range(cut + 1):
        _assert_frames_equal(a[t], b[t])
    assert not torch.equal(a[cut + 1].pts_world, b[cut + 1].pts_world)


def test_reset_stream_equals_fresh_stream(tiny_model):
    clip = make_clip(4, seed=3)
    first, _ = _run(tiny_model, make_clip(5, seed=4))  # a stream that ran before
    again, _ = _run(tiny_model, clip)                 # init_state again
    fresh, _ = _run(tiny_model, clip)
    for a, b in zip(again, fresh):
        _assert_frames_equal(a, b)


def test_interleaved_streams_equal_streams_alone(tiny_model):
    c1, c2 = make_clip(5, seed=5), make_clip(5, seed=6)
    alone1, _ = _run(tiny_model, c1)
    alone2, _ = _run(tiny_model, c2)
    s1, s2 = tiny_model.init_state(1, (48, 64)), tiny_model.init_state(1, (48, 64))
    with torch.no_grad():
        for t in range(5):
            o1, s1 = tiny_model.step(c1[:, t], s1)
            o2, s2 = tiny_model.step(c2[:, t], s2)
            _assert_frames_equal(o1, alone1[t])
            _assert_frames_equal(o2, alone2[t])


def test_batch_of_two_equals_two_batches_of_one(tiny_model):
    clip = make_clip(T, B=2, seed=7)
    both, _ = _run(tiny_model, clip)
    one, _ = _run(tiny_model, clip[:1])
    two, _ = _run(tiny_model, clip[1:])
    for t in range(T):
        for name, x in both[t].tensors().items():
            torch.testing.assert_close(x[:1], getattr(one[t], name), atol=1e-5, rtol=1e-5, msg=name)
            torch.testing.assert_close(x[1:], getattr(two[t], name), atol=1e-5, rtol=1e-5, msg=name)


def test_step_does_not_modify_its_input_state(tiny_model):
    clip = make_clip(4)
    _, state = _run(tiny_model, clip[:, :3])
    snapshot = {k: v.clone() for k, v in state.tensors().items()}
    frames, index = list(state.psm_frames), state.frame_index
    with torch.no_grad():
        out_a, _ = tiny_model.step(clip[:, 3], state)
        out_b, _ = tiny_model.step(clip[:, 3], state)  # the same old state again
    _assert_frames_equal(out_a, out_b)
    assert state.frame_index == index and state.psm_frames == frames
    assert all(torch.equal(v, state.tensors()[k]) for k, v in snapshot.items())


def test_saved_state_resumes_identically(tiny_model, tmp_path):
    clip = make_clip(T + 2, seed=8)
    outs, _ = _run(tiny_model, clip)
    _, state = _run(tiny_model, clip[:, :5])
    path = tmp_path / "stream.safetensors"
    state.save(path)
    loaded = StreamState.load(path)
    assert loaded.frame_index == 5 and loaded.psm_frames == state.psm_frames
    assert set(loaded.psm_cache) == set(state.psm_cache)
    resumed, _ = _run(tiny_model, clip[:, 5:], loaded)
    for t, out in enumerate(resumed, start=5):
        _assert_frames_equal(out, outs[t])


def test_state_load_rejects_foreign_files(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError):
        StreamState.load(bad)
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, str(tmp_path / "y.safetensors"))
    with pytest.raises(ValueError, match="not a mem4d stream state"):
        StreamState.load(tmp_path / "y.safetensors")


def test_detach_and_to(tiny_model):
    clip = make_clip(3)
    _, state = tiny_model.stream(clip)  # with grad enabled: tensors carry graphs
    assert any(t.requires_grad for t in state.tensors().values())
    det = state.detach()
    assert not any(t.requires_grad for t in det.tensors().values())
    cache = sum(t.numel() * t.element_size() for t in state.psm_cache.values())  # detach drops the PSM cache
    assert det.psm_cache == {} and det.to("cpu").nbytes() == state.nbytes() - cache > 0


@pytest.mark.parametrize(
    "frame, match",
    [
        (torch.rand(1, 3, 48, 64).numpy(), "torch.Tensor"),
        (torch.rand(1, 48, 64), r"\(B, 3, H, W\)"),
        (torch.rand(1, 2, 3, 48, 64), "clip"),
        (torch.rand(2, 3, 48, 64), "batch"),
        (torch.rand(1, 3, 64, 64), "init_state"),
        (torch.full((1, 3, 48, 64), float("nan")), "NaN"),
        (torch.rand(1, 3, 48, 64) * 255, r"\[0, 1\]"),
        ((torch.rand(1, 3, 48, 64) * 255).to(torch.uint8), "float"),
    ],
)
def test_step_rejects_bad_frames(tiny_model, frame, match):
    state = tiny_model.init_state(1, (48, 64))
    with pytest.raises(ValueError, match=match):
        tiny_model.step(frame, state)


def test_init_state_rejects_sizes_not_multiple_of_patch(tiny_model):
    with pytest.raises(ValueError, match="multiples of the patch size 16"):
        tiny_model.init_state(1, (50, 64))
    with pytest.raises(ValueError, match="batch_size"):
        tiny_model.init_state(0, (48, 64))


def test_forward_rejects_non_clips(tiny_model):
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        tiny_model(torch.rand(1, 3, 48, 64))
