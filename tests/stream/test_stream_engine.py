"""The streaming loop: flat memory, bounded fusion, Ctrl-C handling, known intrinsics."""

from __future__ import annotations

import gc
import os
import signal
import tracemalloc

import numpy as np
import pytest
import torch

from mem4d.geometry.camera import depth_to_pts_cam, fov_to_intrinsics
from mem4d.model.outputs import FrameOutput
from mem4d.stream.engine import RunningStats, apply_known_intrinsics, defer_interrupts, run_stream
from mem4d.stream.preprocess import Preprocessor
from mem4d.stream.sinks import ReconstructionWriter, WriterOptions
from mem4d.stream.sources import RawFrame


class FakeModel:
    """Stands in for Mem4D: depth 2 m with a ramp, a camera sliding along x, a moving square."""

    def __init__(self, bad_at: int | None = None) -> None:
        self.bad_at = bad_at

    def init_state(self, batch_size=1, image_size=(32, 32)):
        return {"t": 0, "size": image_size}

    def step(self, frame, state):
        t = state["t"]
        H, W = state["size"]
        depth = torch.full((1, H, W), 2.0) + torch.linspace(0, 1, W)
        K = fov_to_intrinsics(torch.tensor([1.0]), torch.tensor([1.0]), H, W)
        c2w = torch.eye(4).unsqueeze(0).clone()
        c2w[0, 0, 3] = 0.5 * t  # 0.5 m per frame: the world keeps growing
        if self.bad_at == t:
            c2w[0, 0, 0] = float("nan")
        pts_cam = depth_to_pts_cam(depth, K)
        pts_world = pts_cam + c2w[:, None, None, :3, 3]
        dyn = torch.zeros(1, H, W)
        dyn[:, 4:12, 4:12] = 0.9
        out = FrameOutput(pts_world=pts_world, conf_world=torch.full((1, H, W), 3.0), pts_cam=pts_cam,
                          conf_cam=torch.full((1, H, W), 3.0), depth=depth, intrinsics=K, cam2world=c2w,
                          fov_x=torch.tensor([1.0]), quat_wxyz=torch.tensor([[1.0, 0, 0, 0]]),
                          translation=c2w[:, :3, 3], dynamic_prob=dyn)
        return out, {"t": t + 1, "size": state["size"]}


def _frames(n, h=32, w=32, interrupt_at=None):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for i in range(n):
        if interrupt_at is not None and i == interrupt_at:
            raise KeyboardInterrupt
        yield RawFrame(i, base)


@pytest.fixture(autouse=True)
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class NullSink:
    def __init__(self):
        self.n = 0

    def write_frame(self, rec):
        self.n += 1


def test_host_memory_stays_flat_and_fusion_bounded(tmp_path):
    """Python-heap growth between frame 20 and frame 70 is tiny: nothing per frame is kept."""
    cap = 400
    writer = ReconstructionWriter(tmp_path / "out", WriterOptions(video=False, glb=False, max_points=cap,
                                                                  voxel_size=0.05, pointmaps=False))
    marks = {}
    sizes = []

    def on_frame(rec):
        sizes.append(len(writer.fusion))  # ints, a handful of bytes each
        if rec.index in (20, 70):
            gc.collect()
            marks[rec.index] = tracemalloc.get_traced_memory()[0]

    FakeModel().step(None, {"t": 0, "size": (32, 32)})  # warm-up: torch imports sympy lazily on first use
    tracemalloc.start()
    try:
        summary = run_stream(FakeModel(), _frames(71), Preprocessor(32), writer, progress=False, on_frame=on_frame)
    finally:
        tracemalloc.stop()
    assert summary.frames == 71 and not summary.interrupted
    growth = marks[70] - marks[20]
    assert growth < 100_000, f"host memory grew by {growth} bytes over 50 frames"
    assert max(sizes) <= cap and writer.fusion.coarsenings >= 1  # the grid hit its cap and coarsened
    assert writer.fusion.nbytes <= cap * 40
    meta = writer.finalize({"complete": True})
    assert meta["frames"] == 71 and meta["static_points"] <= cap
    assert summary.path_length == pytest.approx(0.5 * 70)
    assert summary.mean_depth == pytest.approx(2.5, abs=0.01)
    assert not any(isinstance(v, list) for v in vars(RunningStats()).values())


def test_keyboard_interrupt_in_the_source_ends_cleanly():
    sink = NullSink()
    summary = run_stream(FakeModel(), _frames(10, interrupt_at=4), Preprocessor(32), sink, progress=False)
    assert summary.interrupted and summary.frames == 4 and sink.n == 4


def test_non_finite_camera_is_an_error():
    with pytest.raises(ValueError, match="non-finite cam2world at frame 2"):
        run_stream(FakeModel(bad_at=2), _frames(5), Preprocessor(32), NullSink(), progress=False)


def test_timestamps_from_fps():
    stamps = []

    class Sink:
        def write_frame(self, rec):
            stamps.append((rec.source_index, rec.timestamp))

    frames = (RawFrame(i, np.zeros((32, 32, 3), np.uint8)) for i in (0, 3, 6))
    run_stream(FakeModel(), frames, Preprocessor(32), Sink(), fps=30.0, progress=False)
    assert stamps == [(0, 0.0), (3, 0.1), (6, 0.2)]


def test_defer_interrupts_holds_sigint_until_the_block_ends():
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under nohup
    done = []
    with pytest.raises(KeyboardInterrupt):
        with defer_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("rest of the block ran")
    assert done == ["rest of the block ran"]
    assert signal.getsignal(signal.SIGINT) is before


def test_apply_known_intrinsics():
    out, _ = FakeModel().step(None, {"t": 1, "size": (32, 48)})
    K = torch.tensor([[40.0, 0, 20.0], [0, 42.0, 15.0], [0, 0, 1]], dtype=torch.float64)
    new = apply_known_intrinsics(out, K)
    torch.testing.assert_close(new.intrinsics[0], K.float())
    torch.testing.assert_close(new.depth, out.depth)
    v, u = 7, 30
    d = out.depth[0, v, u]
    expected = torch.stack([(u - 20.0) / 40.0 * d, (v - 15.0) / 42.0 * d, d])
    torch.testing.assert_close(new.pts_cam[0, v, u], expected)
    torch.testing.assert_close(new.pts_world[0, v, u], expected + out.cam2world[0, :3, 3])
    assert new.fov_x.item() == pytest.approx(2 * np.arctan(24 / 40.0))


def test_a_failing_viewer_is_dropped_with_a_warning():
    warnings = []

    class BrokenViewer:
        calls = 0

        def add_frame(self, index, rgb, out):
            BrokenViewer.calls += 1
            raise RuntimeError("websocket closed")

    sink = NullSink()
    summary = run_stream(FakeModel(), _frames(4), Preprocessor(32), sink, progress=False, viewer=BrokenViewer(),
                         warn=warnings.append)
    assert summary.frames == 4 and sink.n == 4 and BrokenViewer.calls == 1
    assert len(warnings) == 1 and "websocket closed" in warnings[0]
