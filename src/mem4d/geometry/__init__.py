"""Geometry as library code: SE(3), rotations, cameras, pointmaps, alignment.

Every function takes leading batch dimensions `(..., 4, 4)` / `(..., N, 3)`; conventions
(OpenCV cameras, cam2world poses, WXYZ quaternions, pixel centres, z-depth) are in
docs/CONVENTIONS.md, each pinned by a `test_convention_*` test in tests/geometry/.

Modules: `se3` (rigid transforms, the batch rule for matrices applied to points),
`rotation` (quaternions, axis-angle, matrices), `camera` (projection, depth <-> points,
FoV, resize/crop of intrinsics), `pointmap` (depth from pointmaps, scale normalisation),
`align` (Umeyama, scale fits; import it as `mem4d.geometry.align`).
"""

from mem4d.geometry.camera import (
    crop_intrinsics,
    depth_to_pts_cam,
    depth_to_pts_world,
    focal_to_fov,
    fov_to_focal,
    fov_to_intrinsics,
    intrinsics_inverse,
    intrinsics_to_fov,
    pixel_grid,
    project,
    pts_cam_to_depth,
    resize_intrinsics,
    scale_intrinsics,
    unproject,
    valid_from_depth,
)
from mem4d.geometry.pointmap import normalize_pointmap, pointmap_to_depth
from mem4d.geometry.rotation import (
    axis_angle_to_matrix,
    axis_angle_to_quat,
    matrix_to_axis_angle,
    matrix_to_quat,
    quat_canonical,
    quat_conjugate,
    quat_multiply,
    quat_to_axis_angle,
    quat_to_matrix,
    quat_wxyz_to_xyzw,
    quat_xyzw_to_wxyz,
    rotation_angle,
)
from mem4d.geometry.se3 import (
    cam_a2cam_b,
    reanchor_to_first_frame,
    se3_compose,
    se3_from_rt,
    se3_inverse,
    se3_to_rt,
    transform_points,
)

__all__ = [
    # se3
    "se3_inverse",
    "se3_compose",
    "se3_from_rt",
    "se3_to_rt",
    "transform_points",
    "cam_a2cam_b",
    "reanchor_to_first_frame",
    # rotation
    "quat_to_matrix",
    "matrix_to_quat",
    "quat_canonical",
    "quat_multiply",
    "quat_conjugate",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "axis_angle_to_quat",
    "quat_to_axis_angle",
    "rotation_angle",
    "quat_xyzw_to_wxyz",
    "quat_wxyz_to_xyzw",
    # camera
    "project",
    "unproject",
    "pixel_grid",
    "intrinsics_inverse",
    "valid_from_depth",
    "depth_to_pts_cam",
    "pts_cam_to_depth",
    "depth_to_pts_world",
    "fov_to_intrinsics",
    "intrinsics_to_fov",
    "fov_to_focal",
    "focal_to_fov",
    "scale_intrinsics",
    "resize_intrinsics",
    "crop_intrinsics",
    # pointmap
    "pointmap_to_depth",
    "normalize_pointmap",
]
