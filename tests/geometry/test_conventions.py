"""One test per convention in docs/CONVENTIONS.md (the doc names each test)."""

import ast
import inspect
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from mem4d import geometry
from mem4d.geometry import (
    axis_angle_to_matrix,
    cam_a2cam_b,
    crop_intrinsics,
    depth_to_pts_cam,
    depth_to_pts_world,
    fov_to_intrinsics,
    intrinsics_to_fov,
    matrix_to_quat,
    pixel_grid,
    pointmap_to_depth,
    project,
    quat_to_matrix,
    quat_wxyz_to_xyzw,
    quat_xyzw_to_wxyz,
    reanchor_to_first_frame,
    resize_intrinsics,
    se3_compose,
    se3_inverse,
    transform_points,
    unproject,
    valid_from_depth,
)

from ._helpers import generator, random_intrinsics, random_quat, random_se3

ROOT = Path(__file__).resolve().parents[2]
F64 = torch.float64
K_SIMPLE = torch.tensor([[100.0, 0, 31.5], [0, 100, 23.5], [0, 0, 1]], dtype=F64)  # 64 x 48 image


def test_convention_opencv_axes():
    cx, cy = K_SIMPLE[0, 2], K_SIMPLE[1, 2]
    u, v = project(K_SIMPLE, torch.tensor([0.1, 0.0, 1.0], dtype=F64))
    assert u > cx and v == cy  # +x is to the right
    u, v = project(K_SIMPLE, torch.tensor([0.0, 0.1, 1.0], dtype=F64))
    assert v > cy and u == cx  # +y is down
    # +z is forward: lifting any pixel with positive depth gives z > 0.
    assert unproject(K_SIMPLE, torch.tensor([5.0, 7.0], dtype=F64), torch.tensor(2.0, dtype=F64))[2] > 0


def test_convention_cam2world():
    g = generator(0)
    cam2world = random_se3(g=g)
    centre = transform_points(cam2world, torch.zeros(3, dtype=F64))
    torch.testing.assert_close(centre, cam2world[:3, 3])
    # A point on the optical axis lies along cam2world[:3, 2] from the centre.
    ahead = transform_points(cam2world, torch.tensor([0.0, 0.0, 2.0], dtype=F64))
    torch.testing.assert_close(ahead - centre, 2 * cam2world[:3, 2])
    # The world point projects back through the inverse (world2cam), not through cam2world.
    uv = project(K_SIMPLE, transform_points(se3_inverse(cam2world), ahead))
    torch.testing.assert_close(uv, K_SIMPLE[:2, 2])


def test_convention_a2b_composition_right_to_left():
    g = generator(1)
    a2b, b2c = random_se3(g=g), random_se3(g=g)
    p_a = torch.randn(5, 3, generator=g, dtype=F64)
    p_c = transform_points(b2c, transform_points(a2b, p_a))  # a -> b first, then b -> c
    torch.testing.assert_close(transform_points(se3_compose(b2c, a2b), p_a), p_c)
    torch.testing.assert_close(transform_points(b2c @ a2b, p_a), p_c)
    cam2world_a, cam2world_b = random_se3(g=g), random_se3(g=g)
    p_world = transform_points(cam2world_a, p_a)  # p_a read as points in camera a
    p_b = transform_points(se3_inverse(cam2world_b), p_world)
    torch.testing.assert_close(transform_points(cam_a2cam_b(cam2world_a, cam2world_b), p_a), p_b)


_BANNED_NAMES = {"pose", "poses", "extrinsics", "extrinsic"}


def _defined_names(tree: ast.AST):
    """(name, line) of every argument, assignment target, field and attribute assigned."""
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            yield node.arg, node.lineno
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id, node.lineno
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            yield node.attr, node.lineno


# Scans the geometry package; other packages can be added here as they adopt the rule.
_SCANNED_FOR_POSE_NAMES = [ROOT / "src" / "mem4d" / "geometry"]


def test_convention_no_bare_pose_or_extrinsics_names():
    offenders = []
    paths = sorted(p for root in _SCANNED_FOR_POSE_NAMES for p in root.rglob("*.py"))
    assert paths, "nothing scanned"
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        offenders += [
            f"{path.relative_to(ROOT)}:{line}: {name}" for name, line in _defined_names(tree) if name in _BANNED_NAMES
        ]
    assert not offenders, "bare pose/extrinsics names (say cam2world, world2cam, a2b...):\n" + "\n".join(offenders)


def test_convention_world_is_first_camera():
    cam2world = random_se3(3, 4, g=generator(2))
    anchored = reanchor_to_first_frame(cam2world)
    assert torch.equal(anchored[:, 0], torch.eye(4, dtype=F64).expand(3, 4, 4))
    # Relative motion between any two frames is unchanged.
    torch.testing.assert_close(
        cam_a2cam_b(anchored[:, 3], anchored[:, 1]), cam_a2cam_b(cam2world[:, 3], cam2world[:, 1])
    )


def test_convention_quaternion_wxyz_canonical():
    assert torch.equal(matrix_to_quat(torch.eye(3, dtype=F64)), torch.tensor([1.0, 0, 0, 0], dtype=F64))
    R_z90 = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=F64)
    c = math.sqrt(0.5)
    torch.testing.assert_close(matrix_to_quat(R_z90), torch.tensor([c, 0, 0, c], dtype=F64))
    q = random_quat(500, g=generator(3))
    q_back = matrix_to_quat(quat_to_matrix(q))
    assert (q_back[:, 0] >= 0).all() and (q[:, 0] < 0).any()
    # q and -q are the same rotation; the canonical one is returned for both.
    torch.testing.assert_close(matrix_to_quat(quat_to_matrix(-q)), q_back)
    # Half-turn tie-break: w == 0, first non-zero of x, y, z positive.
    assert torch.equal(
        matrix_to_quat(torch.diag(torch.tensor([-1.0, 1, -1], dtype=F64))), torch.tensor([0.0, 0, 1, 0], dtype=F64)
    )


def test_convention_tum_xyzw_converts_at_io():
    # A TUM line "timestamp tx ty tz qx qy qz qw" for +90 degrees about z.
    c = math.sqrt(0.5)
    q_xyzw = torch.tensor([0.0, 0.0, c, c], dtype=F64)
    q = quat_xyzw_to_wxyz(q_xyzw)
    torch.testing.assert_close(quat_to_matrix(q), torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=F64))
    assert torch.equal(quat_wxyz_to_xyzw(q), q_xyzw)
    # Reading it as WXYZ would be a different rotation: the conversion matters.
    assert not torch.allclose(quat_to_matrix(q_xyzw), quat_to_matrix(q))


def test_convention_right_handed_rotations():
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64))
    torch.testing.assert_close(R @ torch.tensor([1.0, 0, 0], dtype=F64), torch.tensor([0.0, 1, 0], dtype=F64))
    torch.testing.assert_close(R @ torch.tensor([0.0, 1, 0], dtype=F64), torch.tensor([-1.0, 0, 0], dtype=F64))


def test_convention_pixel_centre():
    H, W = 48, 64
    grid = pixel_grid(H, W, dtype=F64)
    assert torch.equal(grid[5, 7], torch.tensor([7.0, 5.0], dtype=F64))  # grid[v, u] == (u, v)
    # The optical axis of a centred camera hits the middle of the image, which under the
    # pixel-centre convention is ((W-1)/2, (H-1)/2): between pixels 31 and 32 for W = 64.
    K = fov_to_intrinsics(torch.tensor(1.0, dtype=F64), 0.8, H, W)
    uv = project(K, torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    torch.testing.assert_close(uv, torch.tensor([(W - 1) / 2, (H - 1) / 2], dtype=F64))
    torch.testing.assert_close(uv, grid.mean((0, 1)))
    # The rays through the outer edges of the first and last pixels span exactly fov_x.
    one = torch.tensor(1.0, dtype=F64)
    left = unproject(K, torch.tensor([-0.5, (H - 1) / 2], dtype=F64), one)
    right = unproject(K, torch.tensor([W - 0.5, (H - 1) / 2], dtype=F64), one)
    angle = math.atan(-left[0] / left[2]) + math.atan(right[0] / right[2])
    assert abs(angle - 1.0) < 1e-12


def test_convention_fov_principal_point():
    H, W = 30, 40
    K = fov_to_intrinsics(math.radians(90), math.radians(60), H, W)
    assert K[0, 2] == (W - 1) / 2 and K[1, 2] == (H - 1) / 2
    torch.testing.assert_close(K[0, 0], torch.tensor((W / 2) / math.tan(math.radians(45))))
    torch.testing.assert_close(K[1, 1], torch.tensor((H / 2) / math.tan(math.radians(30))))
    fov_x, fov_y = intrinsics_to_fov(K, H, W)
    torch.testing.assert_close(torch.stack([fov_x, fov_y]), torch.tensor([math.radians(90), math.radians(60)]))


def test_convention_resize_half_pixel():
    # Downsample by 2 with area averaging: output pixel u' covers input pixels 2u', 2u'+1,
    # whose centre 2u' + 0.5 maps to u' exactly when u' = (u + 0.5) / 2 - 0.5.
    K = fov_to_intrinsics(1.2, 1.0, 8, 8).to(F64)
    K_half = resize_intrinsics(K, (8, 8), (4, 4))
    image_u = pixel_grid(8, 8, dtype=F64)[..., 0]  # an image whose value is its own u
    half_u = F.interpolate(image_u[None, None], size=(4, 4), mode="area")[0, 0]
    # Where an input-u value sits in the output follows (u + 0.5) * 0.5 - 0.5.
    torch.testing.assert_close((half_u + 0.5) * 0.5 - 0.5, pixel_grid(4, 4, dtype=F64)[..., 0])
    torch.testing.assert_close(K_half[0, 2], (K[0, 2] + 0.5) * 0.5 - 0.5)
    assert K_half[0, 2] == 1.5  # the centre of a 4-pixel-wide image
    assert torch.equal(crop_intrinsics(K, 2, 3)[:2, 2], K[:2, 2] - torch.tensor([2.0, 3.0], dtype=F64))


def test_convention_z_depth():
    depth = torch.full((1, 48, 64), 2.0, dtype=F64)
    pts_cam = depth_to_pts_cam(depth, K_SIMPLE)
    assert torch.equal(pts_cam[..., 2], depth)  # z equals depth everywhere...
    corner = pts_cam[0, 0, 0]
    assert corner.norm() > 2.0 + 0.1  # ...so off-axis points are farther than `depth` away
    assert pointmap_to_depth(pts_cam)[0, 0, 0] == 2.0


def test_convention_invalid_depth():
    depth = torch.tensor([[[2.0, 0.0], [float("nan"), float("inf")]]], dtype=F64)
    valid = valid_from_depth(depth)
    assert valid.tolist() == [[[True, False], [False, False]]]
    pts_cam = depth_to_pts_cam(depth, K_SIMPLE)
    assert torch.equal(pointmap_to_depth(pts_cam, valid=valid), torch.tensor([[[2.0, 0], [0, 0]]], dtype=F64))


def test_convention_shapes():
    B, T, H, W = 2, 3, 4, 5
    g = generator(4)
    depth = 1 + torch.rand(B, T, H, W, generator=g, dtype=F64)
    intrinsics = random_intrinsics(B, T, g=g)
    cam2world = random_se3(B, T, g=g)
    pts_world = depth_to_pts_world(depth, intrinsics, cam2world)
    assert pts_world.shape == (B, T, H, W, 3)  # xyz last
    uv = project(intrinsics, transform_points(se3_inverse(cam2world), pts_world))
    assert uv.shape == (B, T, H, W, 2)
    torch.testing.assert_close(uv[1, 2, 3, 4], torch.tensor([4.0, 3.0], dtype=F64))  # (u, v) = (column, row)


def test_convention_batch_rule_leading_dims():
    g = generator(5)
    cam2world = random_se3(2, g=g)  # (B, 4, 4)
    pts = torch.randn(2, 3, 4, 3, generator=g, dtype=F64)  # (B, H, W, 3)
    out = transform_points(cam2world, pts)
    torch.testing.assert_close(out[1], transform_points(cam2world[1], pts[1]))
    # The batch dims line up with the *leading* dims, not the trailing ones (as plain
    # right-aligned broadcasting would do).
    try:
        transform_points(random_se3(4, g=g), torch.randn(2, 4, 3, dtype=F64))
    except ValueError:
        pass
    else:
        raise AssertionError("a (4, 4, 4) transform must not line up with the trailing dim of (2, 4, 3) points")


_SYNONYMS = {
    "pose", "poses", "extrinsics", "extrinsic", "K", "intrinsic", "c2w", "w2c", "cam_to_world",
    "camera_to_world", "world_to_cam", "mask", "masks", "conf", "confidence", "depths", "depth_map",
    "points", "xyz", "pts", "points_world", "points_cam", "world_points", "valid_mask",
}  # fmt: skip


def test_convention_one_name_per_concept():
    names = {}
    for public in geometry.__all__:
        for param in inspect.signature(getattr(geometry, public)).parameters:
            names.setdefault(param, []).append(public)
    # transform_points is generic in its frames: `pts` with `a2b` is the right name there.
    bad = {n: fns for n, fns in names.items() if n in _SYNONYMS and fns != ["transform_points"]}
    assert not bad, f"use the project's names (docs/CONVENTIONS.md), not: {bad}"
    for expected in ("cam2world", "intrinsics", "depth", "pts_cam", "valid"):
        assert expected in names


def test_conventions_doc_and_tests_agree():
    doc = (ROOT / "docs" / "CONVENTIONS.md").read_text()
    in_doc = set(re.findall(r"`(test_convention_\w+)`", doc))

    def defined_in(paths):
        names = set()
        for path in paths:
            names |= set(re.findall(r"^def (test_convention_\w+)\(", path.read_text(), flags=re.MULTILINE))
        return names

    everywhere = defined_in((ROOT / "tests").rglob("test_*.py"))
    here = defined_in([Path(__file__)])
    assert in_doc, "docs/CONVENTIONS.md names no test"
    assert in_doc <= everywhere, f"named in docs/CONVENTIONS.md but not defined: {sorted(in_doc - everywhere)}"
    assert here <= in_doc, f"defined here but not listed in docs/CONVENTIONS.md: {sorted(here - in_doc)}"
