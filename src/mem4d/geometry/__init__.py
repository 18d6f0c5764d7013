"""Geometry as library code: SE(3), rotations, cameras, pointmaps, alignment.

Every function takes leading batch dimensions `(..., 4, 4)` / `(..., N, 3)`; conventions
(OpenCV cameras, cam2world poses, WXYZ quaternions) are in docs/CONVENTIONS.md.
"""
