"""PLY point clouds: a small writer and reader with no dependency beyond numpy.

Files are ``binary_little_endian`` by default (``ascii`` on request) with one ``vertex``
element: ``x y z`` as ``float``, optional ``red green blue`` as ``uchar`` and optional extra
scalar properties (e.g. ``confidence``). MeshLab, CloudCompare, Open3D, trimesh and Blender
read them. Coordinates are written as given (mem4d writes world points: the OpenCV camera of
the stream's first frame, metres).

Example::

    write_ply("cloud.ply", xyz, rgb)          # xyz (N, 3) float, rgb (N, 3) uint8
    cloud = read_ply("cloud.ply")             # {"x": ..., "red": ..., ...} and cloud["xyz"]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["write_ply", "read_ply"]

# PLY scalar type names -> numpy dtypes (both the classic and the sized spellings).
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_NUMPY_TO_PLY = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
                 "f4": "float", "f8": "double"}


def write_ply(path: str | os.PathLike, xyz: np.ndarray, rgb: np.ndarray | None = None, *,
              extra: dict[str, np.ndarray] | None = None, binary: bool = True, comment: str | None = None) -> None:
    """Writes N points.

    Args:
        path: output file.
        xyz: (N, 3) coordinates (written as float32).
        rgb: optional (N, 3) colours, uint8 or floats in [0, 1].
        extra: optional per-point scalars by property name, each (N,) (int or float arrays; kept
            as float32 / int32 unless already 8/16-bit).
        binary: ``binary_little_endian`` (default) or ``ascii``.
        comment: optional header comment (one line).
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"write_ply: xyz must be (N, 3), got {xyz.shape}")
    n = xyz.shape[0]
    fields: list[tuple[str, str]] = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    columns: dict[str, np.ndarray] = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (n, 3):
            raise ValueError(f"write_ply: rgb must be (N, 3) = ({n}, 3), got {rgb.shape}")
        if rgb.dtype != np.uint8:
            rgb = (np.clip(rgb.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        for i, name in enumerate(("red", "green", "blue")):
            fields.append((name, "u1"))
            columns[name] = rgb[:, i]
    for name, values in (extra or {}).items():
        values = np.asarray(values).reshape(-1)
        if values.shape[0] != n:
            raise ValueError(f"write_ply: extra property {name!r} has {values.shape[0]} values for {n} points")
        if values.dtype.kind == "f":
            code = "<f4" if values.dtype.itemsize <= 4 else "<f8"
        elif values.dtype.kind in "iub":
            code = {1: "i1", 2: "<i2"}.get(values.dtype.itemsize, "<i4") if values.dtype.kind == "i" else \
                {1: "u1", 2: "<u2"}.get(values.dtype.itemsize, "<u4")
        else:
            raise ValueError(f"write_ply: extra property {name!r} has unsupported dtype {values.dtype}")
        fields.append((name, code))
        columns[name] = values
    table = np.empty(n, dtype=fields)
    for name, _ in fields:
        table[name] = columns[name]
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0"]
    if comment:
        header.append("comment " + " ".join(comment.splitlines()))
    header.append(f"element vertex {n}")
    header += [f"property {_NUMPY_TO_PLY[np.dtype(code).str[1:]]} {name}" for name, code in fields]
    header.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            f.write(table.tobytes())
        else:
            for row in table:
                f.write((" ".join(_ascii_value(v) for v in row) + "\n").encode("ascii"))


def _ascii_value(v: object) -> str:
    if isinstance(v, (np.floating, float)):
        return repr(float(v))
    return str(int(v))  # type: ignore[call-overload]


def read_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads the ``vertex`` element of a PLY file (ascii or binary, scalar properties only).

    Returns:
        The vertex properties by name (numpy arrays) plus ``"xyz"`` (N, 3) float64 and, when the
        file has colours, ``"rgb"`` (N, 3) uint8.
    """
    data = Path(path).read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError(f"{path}: not a PLY file (no 'ply' magic / 'end_header')")
    body_start = data.index(b"\n", end) + 1
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for line in lines[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property":
            if parts[1] == "list":  # fine in later elements (faces): only the vertex block is read
                if elements:
                    elements[-1][2].append((parts[-1], "list"))
                continue
            if not elements or parts[1] not in _PLY_TYPES:
                raise ValueError(f"{path}: bad property line {line!r}")
            elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"{path}: unknown PLY format {fmt!r}")
    if not elements or elements[0][0] != "vertex":
        raise ValueError(f"{path}: the first element must be 'vertex'")
    _, n, props = elements[0]
    if any(code == "list" for _, code in props):
        raise ValueError(f"{path}: list properties in the vertex element are not supported")
    if fmt == "ascii":
        text = data[body_start:].decode("ascii").split()
        if len(text) < n * len(props):
            raise ValueError(f"{path}: truncated ascii body")
        flat = np.array(text[: n * len(props)], dtype=np.float64).reshape(n, len(props))
        out = {name: flat[:, i].astype(code) for i, (name, code) in enumerate(props)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + code) for name, code in props])
        if len(data) - body_start < n * dtype.itemsize:
            raise ValueError(f"{path}: truncated binary body ({len(data) - body_start} bytes for {n} vertices)")
        table = np.frombuffer(data, dtype=dtype, count=n, offset=body_start)
        out = {name: np.array(table[name]) for name, _ in props}
    if not all(c in out for c in "xyz"):
        raise ValueError(f"{path}: vertex element has no x y z properties")
    out["xyz"] = np.stack([out["x"], out["y"], out["z"]], axis=-1).astype(np.float64) if n else np.zeros((0, 3))
    if all(c in out for c in ("red", "green", "blue")):
        out["rgb"] = np.stack([out["red"], out["green"], out["blue"]], axis=-1).astype(np.uint8)
    return out
