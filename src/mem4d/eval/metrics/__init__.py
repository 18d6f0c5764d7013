"""Model-free evaluation metrics reproducing the MonST3R / CUT3R protocols (PROTOCOLS 1).

* :mod:`.depth`: video depth (Abs Rel, Sq Rel, RMSE, Log RMSE, delta accuracies) after
  joint per-sequence alignment; per-dataset caps in ``DEPTH_PROTOCOLS``.
* :mod:`.pose`: camera pose ATE / RPE with evo's definitions (Umeyama Sim(3)).
* :mod:`.recon`: multi-view reconstruction Acc / Comp / NC with ICP and PCA normals.

Everything here works on arrays (no model, no dataset); TUM trajectory files and timestamp
association are in :mod:`mem4d.eval.trajectory_io`.
"""

from mem4d.eval.metrics.depth import (
    DEPTH_METRIC_KEYS,
    DEPTH_PROTOCOLS,
    DepthProtocol,
    aggregate_depth_metrics,
    depth_metrics,
    resize_depth,
)
from mem4d.eval.metrics.pose import PoseAlignmentError, align_trajectory, pose_metrics, relative_pose_errors
from mem4d.eval.metrics.recon import (
    IcpResult,
    align_median_scale_shift,
    central_crop,
    estimate_normals,
    evaluate_reconstruction,
    icp_point_to_point,
    recon_metrics,
)

__all__ = [
    "DEPTH_METRIC_KEYS",
    "DEPTH_PROTOCOLS",
    "DepthProtocol",
    "aggregate_depth_metrics",
    "depth_metrics",
    "resize_depth",
    "PoseAlignmentError",
    "align_trajectory",
    "pose_metrics",
    "relative_pose_errors",
    "IcpResult",
    "align_median_scale_shift",
    "central_crop",
    "estimate_normals",
    "evaluate_reconstruction",
    "icp_point_to_point",
    "recon_metrics",
]
