"""Adapters from other parts of mem4d to scene-memory `Observation`s.

`observation_from_frame_output` maps the model's per-frame output (``mem4d.model.outputs.
FrameOutput``) to an `Observation` by attribute access only, so this module does not import
the model (and works with any object that has the same fields). `write_frame_output` writes
one into a `SceneMemory`, first handing it the loop the model closed on that frame, if any.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .camera_utils import to_numpy
from .types import Observation

__all__ = ["observation_from_frame_output", "write_frame_output"]


def _pick(out: Any, name: str, b: int, required: bool = True) -> np.ndarray | None:
    val = getattr(out, name, None)
    if val is None:
        if required:
            raise ValueError(f"frame output has no {name!r}; expected a FrameOutput-like object")
        return None
    arr = to_numpy(val)
    if arr.ndim == 0 or b >= arr.shape[0] or b < -arr.shape[0]:
        raise ValueError(f"batch_index {b} out of range for {name} with shape {tuple(arr.shape)}")
    return arr[b]


def observation_from_frame_output(out: Any, t: int, rgb: Any, batch_index: int = 0,
                                  conf_threshold: float | None = None, source: str = "observed",
                                  latent: Any = None, instance_ids: Any = None, points: str = "depth") -> Observation:
    """One stream of a model `FrameOutput` (fields shaped (B, ...)) as an `Observation`.

    Args:
        out: object with ``pts_world`` (B,H,W,3), ``conf_world`` (B,H,W), ``depth`` (B,H,W),
            ``intrinsics`` (B,3,3), ``cam2world`` (B,4,4) and optional ``dynamic_prob`` (B,H,W).
        t: frame time.
        rgb: the input frame, (H,W,3) or (3,H,W) or with a leading batch dim (B,...), float in
            [0, 1] or uint8; numpy or torch.
        batch_index: which stream of the batch.
        conf_threshold: if given, pixels with ``conf_world`` below it are marked invalid
            (non-finite points, zero depth), so they are neither fused nor used for carving.
        source, latent, instance_ids: passed through to the `Observation`.
        points: where the memory's 3D points come from. ``"depth"`` (default): the depth lifted
            along the rays of ``intrinsics`` and placed by ``cam2world``, the camera the memory
            renders and is queried through (and the points the pose refinement aligned); the
            pointmap head's own rays need not agree with the intrinsics (14 % off in focal on a
            scene-memory loop), and with them the revisit renders were 0.7 dB worse (12 loops,
            18.36 vs 19.05 dB; docs/RESULTS.md). ``"world"``: the model's ``pts_world``.

    ``dynamic_mask = dynamic_prob > 0.5`` when the model has a motion head, otherwise it is left
    unset and the memory carves.
    """
    if points not in ("depth", "world"):
        raise ValueError(f"points must be 'depth' or 'world', got {points!r}")
    pts = _pick(out, "pts_world", batch_index).astype(np.float64)
    conf = _pick(out, "conf_world", batch_index).astype(np.float64)
    depth = _pick(out, "depth", batch_index).astype(np.float64)
    K = _pick(out, "intrinsics", batch_index).astype(np.float64)
    c2w = _pick(out, "cam2world", batch_index).astype(np.float64)
    dyn = _pick(out, "dynamic_prob", batch_index, required=False)
    # a weak model can put points behind its camera or emit non-finite values: invalid pixels
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0)
    H, W = depth.shape
    img = to_numpy(rgb)
    if img.ndim == 4:
        img = img[batch_index]
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = np.moveaxis(img, 0, -1)
    if img.shape != (H, W, 3):
        raise ValueError(f"rgb must be (H, W, 3) or (3, H, W) matching depth {(H, W)}, got {tuple(img.shape)}")
    if conf_threshold is not None:
        low = ~(conf >= conf_threshold)
        pts = np.where(low[..., None], np.nan, pts)
        depth = np.where(low, 0.0, depth)
    return Observation(
        t=t, rgb=img, K=K, c2w=c2w, depth=depth, points_world=pts if points == "world" else None, conf=conf,
        dynamic_mask=None if dyn is None else (dyn.astype(np.float64) > 0.5),
        instance_ids=instance_ids, latent=latent, source=source)


def write_frame_output(memory: Any, out: Any, t: int, rgb: Any, batch_index: int = 0, **kwargs: Any) -> Any:
    """Writes frame ``t`` of a model output into ``memory`` (a `SceneMemory`); returns its `WriteReport`.

    Where the model closed a loop on this frame (``out.loop_keyframe`` >= 0, `heads.loop_closure`),
    the memory first spreads the correction over the frames written since the keyframe
    (`SceneMemory.close_loop`), so that what drifted before the loop closed lines up with this
    frame. ``kwargs`` go to `observation_from_frame_output` (e.g. ``conf_threshold``, ``points``).
    """
    obs = observation_from_frame_output(out, t, rgb, batch_index=batch_index, **kwargs)
    onto = _pick(out, "loop_keyframe", batch_index, required=False)
    if onto is not None and int(onto) >= 0:
        memory.close_loop(int(onto), t, _pick(out, "loop_correction", batch_index).astype(np.float64))
    return memory.write(obs)
