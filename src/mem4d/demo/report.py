"""The demo's self-contained HTML report: every image is an embedded base64 PNG, no external file.

`build_report` takes plain arrays (frames, depth, masks, poses) and the metric rows of
`mem4d.demo.evaluate`; it returns the HTML text. The figures are made here too
(`colourise_depth` with its scale `depth_colourbar_png`, `trajectory_png`). Legends sit outside
the plotted data.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["build_report", "colourise_depth", "data_uri", "depth_colourbar_png", "pick_frames", "trajectory_png"]


def colourise_depth(depth: np.ndarray, valid: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8, turbo colours, near = red, far = blue, invalid = black."""
    from matplotlib import colormaps

    x = np.clip((depth - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    rgb = colormaps["turbo"](1.0 - x)[..., :3]
    rgb[~valid] = 0.0
    return (rgb * 255 + 0.5).astype(np.uint8)


def depth_colourbar_png(lo: float, hi: float, label: str = "depth (m)") -> bytes:
    """PNG bytes of the scale of `colourise_depth` over [lo, hi] metres (near = red, far = blue)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 0.75), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.04, 0.55, 0.92, 0.3))
    mappable = ScalarMappable(norm=Normalize(lo, max(hi, lo + 1e-6)), cmap=colormaps["turbo"].reversed())
    bar = fig.colorbar(mappable, cax=ax, orientation="horizontal")
    bar.set_label(f"{label}; black = no depth", fontsize=8, labelpad=1)
    bar.ax.tick_params(labelsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def grey(prob: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 grey."""
    g = (np.clip(np.nan_to_num(prob), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def data_uri(image: np.ndarray | bytes) -> str:
    """A ``data:image/png;base64,...`` URI of a uint8 (H, W[, 3]) array or of PNG bytes."""
    if not isinstance(image, (bytes, bytearray)):
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
        image = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(bytes(image)).decode("ascii")


def pick_frames(num_frames: int, count: int = 4) -> list[int]:
    """``count`` frame indices spread over the sequence, first and last included."""
    if num_frames <= count:
        return list(range(num_frames))
    return sorted({round(i * (num_frames - 1) / (count - 1)) for i in range(count)})


def trajectory_png(gt_c2w: np.ndarray, pred_c2w: np.ndarray | None = None, title: str = "") -> bytes:
    """Top view (x right, z forward of the first GT camera) of the GT camera path and, if given,
    the (already aligned) predicted one; PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    gt = np.asarray(gt_c2w, dtype=np.float64)
    ax.plot(gt[:, 0, 3], gt[:, 2, 3], "-o", color="0.2", ms=2.5, lw=1.5, label="ground truth")
    if pred_c2w is not None:
        pr = np.asarray(pred_c2w, dtype=np.float64)
        ax.plot(pr[:, 0, 3], pr[:, 2, 3], "-o", color="tab:red", ms=2.5, lw=1.2, label="Mem4D (Sim(3)-aligned)")
        for a, b in zip(gt[:, :3, 3], pr[:, :3, 3]):
            ax.plot([a[0], b[0]], [a[2], b[2]], "-", color="tab:red", alpha=0.25, lw=0.6)
    ax.scatter(gt[:1, 0, 3], gt[:1, 2, 3], color="k", s=30, zorder=5, label="frame 0")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m, right of the first camera)")
    ax.set_ylabel("z (m, forward of the first camera)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False)  # below the axes
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1100px; color: #222; padding: 0 16px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.note { background: #fff6d6; border: 1px solid #e6cf7a; padding: 10px 14px; border-radius: 6px; }
table.metrics { border-collapse: collapse; font-size: 0.92em; }
table.metrics th, table.metrics td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
table.metrics th:first-child, table.metrics td:first-child { text-align: left; }
table.metrics tr.model td { font-weight: 600; }
table.strips td, table.strips th { padding: 2px; text-align: center; font-size: 0.85em; font-weight: normal; }
table.strips img { width: 192px; image-rendering: pixelated; display: block; }
code { background: #f2f2f2; padding: 1px 4px; border-radius: 3px; }
.small { color: #666; font-size: 0.85em; }
"""


def _fmt(value: Any, fmt: str) -> str:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return fmt.format(value)


def _metrics_table(rows: Sequence[dict[str, Any]]) -> str:
    from mem4d.demo.evaluate import COLUMNS

    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _, _ in COLUMNS)
    lines = [f'<table class="metrics"><tr><th>method</th>{head}</tr>']
    for r in rows:
        cls = ' class="model"' if not str(r["name"]).startswith("baseline:") else ""
        cells = "".join(f"<td>{_fmt(r.get(k), f)}</td>" for k, _, f, _ in COLUMNS)
        title = html.escape(str(r.get("description", "")))
        lines.append(f'<tr{cls}><td title="{title}">{html.escape(str(r["name"]))}</td>{cells}</tr>')
    lines.append("</table>")
    return "\n".join(lines)


def build_report(
    *,
    title: str,
    scene_text: str,
    columns: Sequence[str],
    strips: Sequence[tuple[int, Sequence[np.ndarray]]],
    trajectory: bytes,
    rows: Sequence[dict[str, Any]] | None = None,
    note_html: str = "",
    footer_html: str = "",
    extra_figures: Sequence[tuple[str, bytes]] = (),
    trajectory_caption: str = "",
    depth_colourbar: bytes | None = None,
    motion_text: str = "",
) -> str:
    """The report's HTML.

    Args:
        title: page title.
        scene_text: one line describing the scene (plain text).
        columns: captions of the image columns.
        strips: ``(frame index, [uint8 image per column])`` rows.
        trajectory: PNG bytes of the trajectory figure.
        rows: metric rows (`mem4d.demo.evaluate.evaluate`); None: no metrics section.
        note_html: trusted HTML shown in a highlighted box at the top (e.g. "no model yet").
        footer_html: trusted HTML at the end (how to open the viewer, files).
        extra_figures: ``(caption, PNG bytes)`` figures after the trajectory.
        trajectory_caption: plain text under the trajectory figure.
        depth_colourbar: PNG bytes of the depth colour scale shared by the depth columns.
        motion_text: plain text on the quality of the moving-pixel map, under the frames.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(scene_text)}</p>",
    ]
    if note_html:
        parts.append(f'<div class="note">{note_html}</div>')
    if rows is not None:
        parts += [
            "<h2>Accuracy against the ground truth</h2>",
            _metrics_table(rows),
            ('<p class="small">Depth: AbsRel (lower is better) and δ&lt;1.25 (fraction of pixels within 25%, higher is '
            "better) over all frames, after one scale for the whole sequence (<em>scale</em>) and as predicted in "
            "metres (<em>metric</em>). Poses: ATE and RPE (RMSE, lower is better) after Sim(3) alignment of the "
            "whole trajectory. Moving IoU: predicted moving pixels (probability &gt; 0.5) against the true ones. "
            "The baseline uses no image information: <code>baseline:constant-depth</code> puts every pixel at the "
            "median true depth and never moves the camera (any constant depth scores the same after scale "
            "alignment).</p>"),
        ]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    parts += ["<h2>Frames</h2>", f'<table class="strips"><tr><th>frame</th>{head}</tr>']
    for t, images in strips:
        cells = "".join(f'<td><img alt="{html.escape(c)} {t}" src="{data_uri(im)}"></td>'
                        for c, im in zip(columns, images))
        parts.append(f"<tr><td>{t}</td>{cells}</tr>")
    parts.append("</table>")
    if depth_colourbar is not None:
        parts.append(f'<img alt="depth colour scale" src="{data_uri(depth_colourbar)}" style="max-width: 500px">')
    if motion_text:
        parts.append(f'<p class="small">{html.escape(motion_text)}</p>')
    parts += ["<h2>Camera trajectory (top view)</h2>",
              f'<img alt="trajectory" src="{data_uri(trajectory)}" style="max-width: 100%">']
    if trajectory_caption:
        parts.append(f'<p class="small">{html.escape(trajectory_caption)}</p>')
    for caption, png in extra_figures:
        parts += [f"<h2>{html.escape(caption)}</h2>", (f'<img alt="{html.escape(caption)}" src="{data_uri(png)}" '
                  'style="max-width: 100%">')]
    if footer_html:
        parts.append(f"<h2>Next</h2>{footer_html}")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
