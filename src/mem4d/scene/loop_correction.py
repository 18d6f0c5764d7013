"""A loop closure's correction spread over the frames it re-poses [not in SCENE_MEMORY.md].

When the model closes a loop at frame t onto an older frame k (`FrameOutput.loop_keyframe`),
frame t's pose jumps by a world-side correction C (`FrameOutput.loop_correction`):
``cam2world_t = C @ chained_t``. The frames between k and t were chained the same way and carry
a growing share of the same drift. As in a pose graph whose odometry edges are all equally
uncertain, the correction is spread linearly in time: what was observed at time tau in (k, t)
moves by ``C^a``, a = (tau - k) / (t - k), the rotation turned by a share a of C's angle about
its axis and the translation a share a of C's; at or before k nothing moves (k is the anchor
the loop closed onto), and at or after t the whole C applies (only what was posed before the
closure arrived is ever moved: frames after t are chained from the corrected pose).

`correct_trajectory` does the same to a whole streamed trajectory after the fact (offline):
`mem4d reconstruct` writes it as ``trajectory_loop_corrected.txt``.

Measured (docs/RESULTS.md, "Loop corrections in the scene memory"): on the scene-memory loops the
frames before a closure at frame 36 moved this way took the revisit PSNR of the memory they wrote
from 19.05 to 20.3 dB (12 loops), the closure alone having placed the revisit frames.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["correct_trajectory", "correction_shares", "move_poses", "spread_correction"]


def correction_shares(times: np.ndarray, t_key: int, t: int) -> np.ndarray:
    """(N,) share in [0, 1] of the correction that applies to what was observed at ``times`` (N,):
    0 at or before ``t_key``, 1 at or after ``t``, linear in between."""
    if t <= t_key:
        raise ValueError(f"a loop closes onto an earlier frame: got keyframe {t_key} for frame {t}")
    return np.clip((np.asarray(times, np.float64) - t_key) / (t - t_key), 0.0, 1.0)


def spread_correction(shares: np.ndarray, correction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The share ``shares`` (N,) of the rigid ``correction`` (4, 4): rotations (N, 3, 3) and
    translations (N, 3), so that a world point x moves to ``R @ x + p``.

    Share 0 is the identity, share 1 is ``correction`` itself; in between the rotation turns by
    that share of its angle about its axis and the translation is that share of its translation.
    """
    C = np.asarray(correction, np.float64)
    if C.shape != (4, 4) or not np.isfinite(C).all():
        raise ValueError(f"the loop correction must be a finite (4, 4) rigid transform, got shape {C.shape}")
    a = np.asarray(shares, np.float64).reshape(-1)
    rotvec = Rotation.from_matrix(C[:3, :3]).as_rotvec()
    R = Rotation.from_rotvec(a[:, None] * rotvec[None]).as_matrix().reshape(-1, 3, 3)
    return R, a[:, None] * C[None, :3, 3]


def correct_trajectory(cam2world: np.ndarray, closures: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """A streamed trajectory with each loop closure spread over the frames it re-poses (offline).

    Args:
        cam2world: (T, 4, 4) the poses as the model streamed them: the frame that closed a loop
            already carries its correction, and the frames after it were chained from there.
        closures: (t, t_key, correction (4, 4)) per closure, frame t closing onto frame t_key, as
            `FrameOutput.loop_keyframe` / ``loop_correction`` report them.
    Returns:
        (T, 4, 4): frames strictly between t_key and t moved by their share of the correction
        (`correction_shares`, `spread_correction`), closures applied in time order; every other
        frame as it was.
    """
    P = np.array(cam2world, np.float64)
    if P.ndim != 3 or P.shape[1:] != (4, 4):
        raise ValueError(f"the trajectory must be (T, 4, 4) poses, got shape {P.shape}")
    for t, t_key, correction in sorted(closures, key=lambda c: c[0]):
        if not 0 <= t_key < t < len(P):
            raise ValueError(f"a loop closure at frame {t} onto frame {t_key} does not fit a trajectory of {len(P)} frames")
        between = np.arange(t_key + 1, t)
        P[between] = move_poses(P[between], *spread_correction(correction_shares(between, t_key, t), correction))
    return P


def move_poses(cam2world: np.ndarray, R: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Poses (M, 4, 4) moved by world-side rigid motions: ``[R | p] @ cam2world`` with R (M, 3, 3)
    and p (M, 3), as `spread_correction` gives them."""
    C = np.tile(np.eye(4), (len(R), 1, 1))
    C[:, :3, :3], C[:, :3, 3] = R, p
    return C @ cam2world
