"""The memory on a scene from the project's generator (`mem4d.data.synthetic.make_scene`).

A dynamic "loop" scene (the camera closes an ellipse and its last frames revisit the first
views) with exact depth, poses and dynamic masks is written into the memory up to the revisit;
the revisit views are then rendered from memory (render quality on static pixels) and every
written view is re-rendered to look for moving objects left in the static layer.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import maximum_filter, minimum_filter

from mem4d.scene import Observation, SceneMemory, SceneMemoryConfig

from .fixtures import masked_psnr

synthetic = pytest.importorskip("mem4d.data.synthetic")

T, SIZE, SEED = 40, (32, 48), 7
N_REVISIT = 4  # the loop's last ~8% of frames re-trace its start


@pytest.fixture(scope="module")
def loop_scene():
    s = synthetic.make_scene(seed=SEED, num_frames=T, image_size=SIZE, camera_path="loop", dynamic=True,
                             environment="room")
    img = s.images.permute(0, 2, 3, 1).numpy()
    valid = s.valid.numpy()
    depth = np.where(valid, s.depth.numpy(), 0.0)
    inst = s.instance_ids.numpy().astype(np.int64) - 1  # Sample: 0 = background; memory: -1
    return img, depth, valid, s.intrinsics.numpy(), s.cam2world.numpy(), s.dynamic_mask.numpy(), inst


def _write(scene, config, with_masks):
    img, depth, _, K, c2w, dyn, inst = scene
    mem = SceneMemory(config)
    for t in range(T - N_REVISIT):
        mem.write(Observation(t=t, rgb=img[t], K=K[t], c2w=c2w[t], depth=depth[t],
                              dynamic_mask=dyn[t] if with_masks else None, instance_ids=inst[t] if with_masks else None))
    return mem


def _ghosts(mem, scene):
    """Worst share of drawn pixels (over past and revisit views) that lie > 10% in front of the
    true static surface, away from depth edges, on pixels not covered by a moving object now."""
    _, depth, _, K, c2w, dyn, _ = scene
    worst = 0.0
    for t in [*range(0, T - N_REVISIT, 3), *range(T - N_REVISIT, T)]:
        r = mem.render(c2w[t], K[t], SIZE)
        smooth = minimum_filter(depth[t], 5) > 0.9 * maximum_filter(depth[t], 5)
        ghost = r.mask[0] & ~dyn[t] & smooth & (r.depth[0] < 0.9 * depth[t])
        worst = max(worst, ghost.sum() / max(r.mask[0].sum(), 1))
    return worst


@pytest.mark.slow
def test_generator_loop_scene_revisit_and_dynamic_exclusion(loop_scene):
    img, _, valid, K, c2w, dyn, _ = loop_scene
    mem = _write(loop_scene, SceneMemoryConfig(), with_masks=True)
    psnrs, covs = [], []
    for t in range(T - N_REVISIT, T):
        r = mem.render(c2w[t], K[t], SIZE)
        m = r.mask[0] & ~dyn[t] & valid[t]
        psnrs.append(masked_psnr(r.rgb[0], img[t], m))
        covs.append(r.coverage)
    ghosts = _ghosts(mem, loop_scene)
    naive = _ghosts(_write(loop_scene, SceneMemoryConfig(carving="never"), with_masks=False), loop_scene)
    print(f"generator loop scene: revisit PSNR min {min(psnrs):.2f} dB, coverage min {min(covs):.3f}, "
          f"ghost pixels {100 * ghosts:.2f}% (naive fusion {100 * naive:.2f}%), subjects {mem.stats().n_subjects}")
    assert min(psnrs) >= 25.0
    assert min(covs) >= 0.9  # the loop's revisit poses are close to, not equal to, the first ones
    assert ghosts <= 0.005
    assert naive >= 0.01  # the scene does exercise dynamic exclusion
    assert mem.stats().n_subjects >= 1
