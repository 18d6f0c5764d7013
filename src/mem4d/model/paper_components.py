"""The paper's component list beside this implementation's modules and their parameter counts.

Example (the paper preset costs nothing to build on the meta device)::

    with torch.device("meta"):
        model = Mem4D(Mem4DConfig.paper())
    print(component_table(model))
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["EXTRA_MODULES", "PAPER_COMPONENTS", "PaperComponent", "component_rows", "component_table"]


@dataclass(frozen=True)
class PaperComponent:
    """One component of the paper's model and the top-level ``Mem4D`` attributes that implement it."""

    name: str
    where: str  # section / equation of arXiv 2508.07908
    paper_says: str
    modules: tuple[str, ...]


PAPER_COMPONENTS: tuple[PaperComponent, ...] = (
    PaperComponent("Image encoder", "§3.1, impl. details", "ViT-Large initialised from CUT3R, frozen", ("encoder",)),
    PaperComponent("Encoder-to-memory projection", "impl. details", "memories are 768 wide (ViT-L: 1024); "
                   "the projection is implied, not described", ("proj",)),
    PaperComponent("Temporal Context Aggregator", "§3.1, Eq. 1-2",
                   "5 past frames, distance-strided 2D convs, 4 self-attention layers, 3D RoPE", ("tca",)),
    PaperComponent("Transient Dynamics Memory", "§3.2, Eq. 3-4",
                   "correlation pyramids with the 2 last frames, MLP, 4-layer motion encoder, 3D RoPE", ("tdm",)),
    PaperComponent("Persistent Structure Memory", "§3.2, Eq. 5",
                   "E_p (4 self-attention blocks) on the global pointmap, FIFO of 100 with frame 0 kept, "
                   "distance-aware 3D-conv compression", ("psm",)),
    PaperComponent("Fusion decoder", "§3.2, Alg. 1",
                   "learnable camera token; L stages of MotionReadBlock + SpatialReadBlock", ("camera_token", "decoder")),
    PaperComponent("Two DPT heads", "§3.2, Eq. 6", "global and self-view pointmaps with confidences",
                   ("head_world", "head_cam")),
    PaperComponent("Camera head", "§3.2, Eq. 6", "MLP: camera token -> FoV, quaternion, translation", ("camera_head",)),
)

#: Top-level modules that are not in the paper, with the option that builds them.
EXTRA_MODULES: dict[str, str] = {
    "motion_head": "motion head [not in the paper] (heads.motion)",
    "unified": "unified recurrent memory (variant 'unified', the ablation baseline)",
    "correspondence": "correspondence head [not in the paper] (heads.camera_pose = 'procrustes')",
}


def component_rows(model: nn.Module) -> list[tuple[str, str, str, str, int]]:
    """(component, where, paper says, modules, parameters) per paper component, then one row
    per extra module the model builds; a module in neither list is an extra of unknown origin."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        key = name.split(".")[0]
        counts[key] = counts.get(key, 0) + p.numel()
    rows = []
    for c in PAPER_COMPONENTS:
        present = [m for m in c.modules if m in counts]
        n = sum(counts[m] for m in present)
        rows.append((c.name, c.where, c.paper_says, ", ".join(present) or "(not built)", n))
    known = {m for c in PAPER_COMPONENTS for m in c.modules}
    for key in sorted(set(counts) - known):
        rows.append((EXTRA_MODULES.get(key, f"{key} [not in the paper]"), "-", "-", key, counts[key]))
    return rows


def component_table(model: nn.Module) -> str:
    """`component_rows` as a markdown table with a total."""
    lines = ["| paper component | where | the paper says | module(s) | parameters |", "|---|---|---|---|---:|"]
    rows = component_rows(model)
    lines += [f"| {name} | {where} | {says} | `{mods}` | {n / 1e6:.2f} M |" for name, where, says, mods, n in rows]
    lines.append(f"| **total** | | | | **{sum(r[-1] for r in rows) / 1e6:.2f} M** |")
    return "\n".join(lines)
