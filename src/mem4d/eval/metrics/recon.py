"""Multi-view 3D reconstruction metrics (PROTOCOLS 1.4, CUT3R ``eval/mv_recon``).

The reference pipeline per scene, reproduced by the functions here:

1. :func:`align_median_scale_shift` (``Regr3D_t_ScaleShiftInv(norm_mode=False,
   gt_scale=True)``): predicted points brought to the GT's median depth and scale; the
   reference then maps both clouds to the world with the GT camera-1 pose (apply
   ``gt_cam2world[0]`` yourself, e.g. with :func:`mem4d.geometry.align.apply_sim3`).
2. :func:`central_crop`: keep the central 224x224 pixels of every frame
   (rows ``H//2 - 112 : H//2 + 112``, columns ``W//2 - 112 : W//2 + 112``), then the
   GT-valid pixels.
3. :func:`icp_point_to_point`: rigid ICP of prediction onto GT, threshold 0.1 (100 for DTU),
   identity initialisation (Open3D ``registration_icp`` point-to-point semantics).
4. :func:`estimate_normals` on both clouds *after* ICP (Open3D ``estimate_normals()``
   default: PCA over the 30 nearest neighbours).
5. :func:`recon_metrics`: Acc / Comp (mean, median NN distances) and normal consistency.

:func:`evaluate_reconstruction` chains 3-5. Open3D is not a dependency: ICP and normals are
implemented with scipy's cKDTree and :func:`mem4d.geometry.align.umeyama`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from mem4d.geometry.align import lower_median, umeyama

__all__ = [
    "central_crop",
    "align_median_scale_shift",
    "estimate_normals",
    "IcpResult",
    "icp_point_to_point",
    "recon_metrics",
    "evaluate_reconstruction",
]


def _np64(x: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def central_crop(x: np.ndarray | Tensor, size: int = 224, hw_axes: tuple[int, int] = (-3, -2)):
    """Central ``size x size`` crop as in the reconstruction protocol.

    Rows ``H//2 - size//2 : H//2 + size//2`` and likewise columns (the image centre, not the
    principal point). Works on numpy arrays and tensors.

    Args:
        x: array with the image height/width at ``hw_axes``; default ``(-3, -2)`` fits
            pointmaps/images ``(..., H, W, C)``; use ``(-2, -1)`` for masks ``(..., H, W)``.
        size: crop side (224 in the protocol).

    Raises:
        ValueError: if the image is smaller than the crop.
    """
    ah, aw = hw_axes
    H, W = x.shape[ah], x.shape[aw]
    if H < size or W < size:
        raise ValueError(f"image {H}x{W} is smaller than the {size}x{size} crop")
    cy, cx, half = H // 2, W // 2, size // 2
    index: list[slice] = [slice(None)] * x.ndim
    index[ah] = slice(cy - half, cy - half + size)
    index[aw] = slice(cx - half, cx - half + size)
    return x[tuple(index)]


def align_median_scale_shift(
    pred_pts: Tensor | np.ndarray,
    gt_pts: Tensor | np.ndarray,
    valid: Tensor | np.ndarray | None = None,
    min_pred_scale: float = 1e-3,
    max_pred_scale: float = 1e3,
) -> tuple[Tensor, dict[str, float]]:
    """Median depth-shift and scale alignment of predicted points to GT (PROTOCOLS 1.4).

    Over all valid points jointly (medians are the lower middle value, as ``torch.nanmedian``):

    1. ``zp = median(pred_z)``, ``zg = median(gt_z)``; subtract from the z of each cloud;
    2. for each shifted cloud: ``c = per-axis median``, ``scale = median(|x - c|)``;
       ``pred_scale`` is clipped to ``[1e-3, 1e3]``;
    3. ``pred *= gt_scale / pred_scale``; then ``zg`` is added back to the z of the
       prediction (the GT is thereby unchanged).

    Args:
        pred_pts: ``(..., 3)`` predicted points (e.g. ``(T, H, W, 3)``, first camera frame).
        gt_pts: same shape, GT points in the GT first-camera frame.
        valid: optional ``(...)`` bool mask (GT-valid pixels).

    Returns:
        ``(aligned_pred (..., 3) float64 tensor, info)`` with ``info`` keys
        ``pred_shift_z, gt_shift_z, pred_scale, gt_scale``. All points are transformed,
        invalid ones included.
    """
    P = torch.as_tensor(_np64(pred_pts))
    G = torch.as_tensor(_np64(gt_pts))
    if P.shape != G.shape or P.shape[-1] != 3:
        raise ValueError(f"pred_pts and gt_pts must be (..., 3) of equal shape, got {tuple(P.shape)}, {tuple(G.shape)}")
    m = torch.ones(P.shape[:-1], dtype=torch.bool) if valid is None else torch.as_tensor(np.asarray(valid)).bool()
    if m.shape != P.shape[:-1]:
        raise ValueError(f"valid must have shape {tuple(P.shape[:-1])}, got {tuple(m.shape)}")
    if not bool(m.any()):
        raise ValueError("align_median_scale_shift: no valid point")
    pv, gv = P[m], G[m]
    zp, zg = lower_median(pv[:, 2]), lower_median(gv[:, 2])
    shift_p = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) * zp
    shift_g = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) * zg
    pv, gv = pv - shift_p, gv - shift_g

    def _scale(x: Tensor) -> Tensor:
        c = torch.stack([lower_median(x[:, i]) for i in range(3)])
        return lower_median((x - c).norm(dim=-1))

    gs = _scale(gv)
    ps = _scale(pv).clamp(min=min_pred_scale, max=max_pred_scale)
    out = (P - shift_p) * (gs / ps) + shift_g
    info = {"pred_shift_z": float(zp), "gt_shift_z": float(zg), "pred_scale": float(ps), "gt_scale": float(gs)}
    return out, info


def estimate_normals(pts: np.ndarray | Tensor, k: int = 30, chunk: int = 65536) -> np.ndarray:
    """Unit normals by PCA over the ``k`` nearest neighbours, like Open3D's default.

    Open3D ``PointCloud.estimate_normals()`` defaults to ``KDTreeSearchParamKNN(knn=30)``:
    covariance of the ``k`` nearest points (the point itself included), normal = eigenvector
    of its smallest eigenvalue; fewer than 3 neighbours gives ``(0, 0, 1)``. Without prior
    normals Open3D leaves the sign arbitrary; consistency metrics use ``|n_a . n_b|``, so the
    sign here (also arbitrary) does not matter.

    Args:
        pts: ``(N, 3)`` points.
        k: neighbours (30 = Open3D default).
        chunk: points processed per batch (bounds memory at ``chunk * k * 3`` floats).

    Returns:
        ``(N, 3)`` float64 unit normals.
    """
    X = _np64(pts)
    # KD-trees degrade badly on many identical points (e.g. a constant-depth baseline): work on
    # the distinct points and give duplicates their twin's normal.
    X, inverse = np.unique(X, axis=0, return_inverse=True)
    return _estimate_normals_distinct(X, k, chunk)[inverse.reshape(-1)]


def _estimate_normals_distinct(X: np.ndarray, k: int, chunk: int) -> np.ndarray:
    n = len(X)
    normals = np.tile(np.array([0.0, 0.0, 1.0]), (n, 1))
    kk = min(k, n)
    if kk < 3:
        return normals
    tree = cKDTree(X)
    for start in range(0, n, chunk):
        q = X[start : start + chunk]
        _, idx = tree.query(q, k=kk)
        nb = X[idx]  # (c, k, 3)
        nb = nb - nb.mean(axis=1, keepdims=True)
        cov = np.einsum("cki,ckj->cij", nb, nb) / kk
        _, vecs = np.linalg.eigh(cov)
        normals[start : start + chunk] = vecs[:, :, 0]
    return normals


@dataclass
class IcpResult:
    """Result of :func:`icp_point_to_point` (Open3D ``RegistrationResult`` fields).

    Attributes:
        transformation: ``(4, 4)`` float64 SE(3) mapping source into target.
        fitness: inlier correspondences / source points (at the final transformation).
        inlier_rmse: RMSE of inlier correspondence distances (0 when there are none).
        n_iterations: ICP updates performed.
    """

    transformation: np.ndarray
    fitness: float
    inlier_rmse: float
    n_iterations: int


def _correspondences(tree: cKDTree, src: np.ndarray, threshold: float):
    d, j = tree.query(src, k=1, distance_upper_bound=threshold)
    ok = np.isfinite(d) & (d < threshold)
    i = np.nonzero(ok)[0]
    d, j = d[ok], j[ok]
    fitness = len(i) / max(len(src), 1)
    rmse = float(np.sqrt((d**2).sum() / len(i))) if len(i) else 0.0
    return i, j, fitness, rmse


def icp_point_to_point(
    source: np.ndarray | Tensor,
    target: np.ndarray | Tensor,
    threshold: float = 0.1,
    init: np.ndarray | Tensor | None = None,
    max_iteration: int = 30,
    relative_fitness: float = 1e-6,
    relative_rmse: float = 1e-6,
) -> IcpResult:
    """Rigid point-to-point ICP with Open3D ``registration_icp`` semantics.

    Defaults are Open3D's ``ICPConvergenceCriteria`` (``relative_fitness=1e-6,
    relative_rmse=1e-6, max_iteration=30``) and the protocol's threshold/initialisation
    (0.1, identity). Loop: correspondences = nearest target point of each (transformed)
    source point if closer than ``threshold``; each iteration fits the rigid update on them
    (Umeyama without scale, Open3D's ``TransformationEstimationPointToPoint()``), composes
    it on the left of the running transformation, re-computes correspondences, fitness and
    inlier RMSE, and stops when both change by less than their relative criterion.

    Args:
        source: ``(N, 3)`` points to move (the prediction).
        target: ``(M, 3)`` fixed points (the GT).
        threshold: max correspondence distance.
        init: optional ``(4, 4)`` initial transformation (identity by default).

    Returns:
        :class:`IcpResult`.
    """
    src0 = _np64(source)
    tgt = _np64(target)
    T = np.eye(4) if init is None else _np64(init).copy()
    tree = cKDTree(tgt)
    src = src0 @ T[:3, :3].T + T[:3, 3]
    i, j, fit, rmse = _correspondences(tree, src, threshold)
    n_it = 0
    for _ in range(max_iteration):
        if len(i) < 3:
            break  # Open3D's update would be the identity (or ill-posed): nothing changes.
        _, R, t = umeyama(torch.from_numpy(src[i]), torch.from_numpy(tgt[j]), with_scale=False)
        U = np.eye(4)
        U[:3, :3], U[:3, 3] = R.numpy(), t.numpy()
        T = U @ T
        src = src @ U[:3, :3].T + U[:3, 3]
        n_it += 1
        prev_fit, prev_rmse = fit, rmse
        i, j, fit, rmse = _correspondences(tree, src, threshold)
        if abs(prev_fit - fit) < relative_fitness and abs(prev_rmse - rmse) < relative_rmse:
            break
    return IcpResult(transformation=T, fitness=float(fit), inlier_rmse=float(rmse), n_iterations=n_it)


def _nearest(cloud: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance and index (into `cloud`) of each query's nearest neighbour. The tree is built on
    the distinct points of `cloud` (distances are unchanged; duplicates are interchangeable)."""
    distinct, first = np.unique(cloud, axis=0, return_index=True)
    dist, j = cKDTree(distinct).query(queries, k=1)
    return dist, first[j]


def recon_metrics(
    pred_pts: np.ndarray | Tensor,
    gt_pts: np.ndarray | Tensor,
    pred_normals: np.ndarray | Tensor | None = None,
    gt_normals: np.ndarray | Tensor | None = None,
    k_normals: int = 30,
) -> dict[str, float]:
    """Accuracy, completeness and normal consistency between two point clouds (PROTOCOLS 1.4).

    * ``acc`` / ``acc_med``: mean / median distance from each predicted point to its nearest
      GT point; ``nc1`` / ``nc1_med``: mean / median ``|n_pred . n_gt(NN)|`` over those pairs;
    * ``comp`` / ``comp_med``: the same from each GT point to the prediction; ``nc2``,
      ``nc2_med`` likewise;
    * ``nc = (nc1 + nc2) / 2`` and ``nc_med = (nc1_med + nc2_med) / 2`` (the reported NC).

    Medians are numpy's (mean of the two middle values), as in the reference.

    Args:
        pred_pts: ``(N, 3)``; gt_pts: ``(M, 3)`` (already aligned, e.g. by
            :func:`evaluate_reconstruction`).
        pred_normals, gt_normals: optional ``(N, 3)`` / ``(M, 3)`` unit normals; estimated
            with :func:`estimate_normals` (``k_normals`` neighbours) when missing.

    Returns:
        dict of floats with the keys above.
    """
    P, G = _np64(pred_pts), _np64(gt_pts)
    if P.ndim != 2 or G.ndim != 2 or P.shape[1] != 3 or G.shape[1] != 3 or not len(P) or not len(G):
        raise ValueError(f"expected non-empty (N, 3) and (M, 3) clouds, got {P.shape} and {G.shape}")
    Np = estimate_normals(P, k_normals) if pred_normals is None else _np64(pred_normals)
    Ng = estimate_normals(G, k_normals) if gt_normals is None else _np64(gt_normals)
    d_acc, j_acc = _nearest(G, P)
    d_comp, j_comp = _nearest(P, G)
    nc1 = np.abs((Ng[j_acc] * Np).sum(-1))
    nc2 = np.abs((Ng * Np[j_comp]).sum(-1))
    out = {
        "acc": float(np.mean(d_acc)),
        "acc_med": float(np.median(d_acc)),
        "comp": float(np.mean(d_comp)),
        "comp_med": float(np.median(d_comp)),
        "nc1": float(np.mean(nc1)),
        "nc1_med": float(np.median(nc1)),
        "nc2": float(np.mean(nc2)),
        "nc2_med": float(np.median(nc2)),
    }
    out["nc"] = (out["nc1"] + out["nc2"]) / 2
    out["nc_med"] = (out["nc1_med"] + out["nc2_med"]) / 2
    return out


def evaluate_reconstruction(
    pred_pts: np.ndarray | Tensor,
    gt_pts: np.ndarray | Tensor,
    icp_threshold: float = 0.1,
    k_normals: int = 30,
) -> dict[str, float]:
    """Protocol steps 3-5: ICP (pred onto GT), normals after ICP, then :func:`recon_metrics`.

    Args:
        pred_pts: ``(N, 3)`` predicted points (median-aligned, cropped, GT-valid, world frame).
        gt_pts: ``(M, 3)`` GT points (same pixels).
        icp_threshold: 0.1 (100 for DTU in the reference).

    Returns:
        :func:`recon_metrics` dict plus ``icp_fitness`` and ``icp_inlier_rmse``.
    """
    P = _np64(pred_pts)
    res = icp_point_to_point(P, gt_pts, threshold=icp_threshold)
    T = res.transformation
    P = P @ T[:3, :3].T + T[:3, 3]
    out = recon_metrics(P, gt_pts, k_normals=k_normals)
    out["icp_fitness"] = res.fitness
    out["icp_inlier_rmse"] = res.inlier_rmse
    return out
