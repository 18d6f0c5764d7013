"""Start a Mem4D model from a CUT3R checkpoint: the encoder and every other tensor whose shape fits.

The paper initialises only the encoder from CUT3R (and freezes it). Four more parts of
CUT3R have exact counterparts here, so a model can start from them too [not in the paper]:

============================  =========================================  ====================
Mem4D                         CUT3R (``cut3r_512_dpt_4_64``)             shape (paper preset)
============================  =========================================  ====================
``encoder.*``                 ``patch_embed.*``, ``enc_blocks.*``,       ViT-L
                              ``enc_norm.*``
``proj`` (E -> D)             ``decoder_embed``                          (768, 1024)
``camera_token``              ``pose_token``                             (1, 1, 768)
``head_world.dpt``            ``downstream_head.dpt_cross``              DPT, 256 features
``head_cam.dpt``              ``downstream_head.dpt_self``               DPT, 256 features
============================  =========================================  ====================

Inside a DPT head (CUT3R's names are DUSt3R's ``DPTOutputAdapter``'s): ``act_postprocess.i.0``
-> ``project.i`` (1x1 conv), ``act_postprocess.i.1`` -> ``resample.i`` (the 4x / 2x
transposed convs, the stride-2 conv; map 2 has none), ``scratch.layer{i+1}_rn`` ->
``to_features.i``, ``scratch.refinenet{i+1}.resConfUnit1 / resConfUnit2 / out_conv`` ->
``fusion.i.skip_unit / unit / out_conv``, ``head.0 / head.2 / head.4`` -> ``out_conv1 / 2 / 3``.
CUT3R's world head is ``dpt_cross`` (points "in the other view", i.e. frame 0's), its self-view
head ``dpt_self``. The heads' weights fit, but what feeds them differs a little: CUT3R's DPT
reads decoder blocks (0, 6, 9, 12) of 12, Mem4D's the ends of stages (2, 4, 6) of 6 (= blocks
4, 8, 12); DUSt3R's fusion upsamples with ``align_corners=True``, this DPT with ``False``. So
the heads start close to CUT3R's, not equal, and are trained on.

Everything else is skipped, each with its reason in the `Cut3rLoadReport` (the decoder
blocks, for example, fit in shape but not in meaning: CUT3R's rotate q/k with a 2D RoPE over
(y, x) in two halves of the head dimension, Mem4D's read blocks with a 3D RoPE over (t, y, x)
in three parts).

Example:
    >>> model = Mem4D(Mem4DConfig.paper())                                  # doctest: +SKIP
    >>> report = load_cut3r_weights(model, "cut3r_512_dpt_4_64.pth")       # doctest: +SKIP
    >>> print(report.summary())                                              # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from mem4d.model.weights import ENCODER_PREFIXES, load_state_dict_file

__all__ = ["Cut3rLoadReport", "cut3r_key_map", "load_cut3r_weights"]

_DPT_HEADS = {"head_world.dpt": "downstream_head.dpt_cross", "head_cam.dpt": "downstream_head.dpt_self"}

# CUT3R key patterns that have no counterpart in Mem4D, with the reason (first match wins).
_SKIP_REASONS: tuple[tuple[str, str], ...] = (
    (r"downstream_head\.dpt_(self|cross)\.scratch\.layer_rn\.",
     "alias of scratch.layer{i+1}_rn (DUSt3R registers the same convs twice); loaded under that name"),
    (r"downstream_head\.dpt_(self|cross)\.scratch\.refinenet4\.resConfUnit1\.",
     "unused in CUT3R too: the coarsest fusion block has no skip input (Mem4D does not build it)"),
    (r"(patch_embed_ray_map|enc_blocks_ray_map|enc_norm_ray_map)\.|masked_ray_map_token$",
     "CUT3R's ray-map encoder (an optional camera-ray input); Mem4D takes images only"),
    (r"masked_img_token$", "CUT3R's token for masked images (its training-time masking); not used"),
    (r"(dec_blocks|dec_norm)\.",
     "CUT3R's decoder cross-attends to its state with a 2D RoPE over (y, x); Mem4D's read blocks attend over "
     "[tokens ; memory] with a 3D RoPE over (t, y, x), so the q/k channels would rotate with other axes"),
    (r"(dec_blocks_state|dec_norm_state|decoder_embed_state|register_tokens|pose_retriever)\.",
     "CUT3R's recurrent state and pose retriever (its unified memory); Mem4D's memories are the TDM and PSM"),
    (r"downstream_head\.dpt_rgb\.", "CUT3R's colour head; Mem4D predicts no colour"),
    (r"downstream_head\.pose_head\.",
     "CUT3R's pose MLP (2 layers, 7 outputs: quaternion + translation) differs from Mem4D's camera head "
     "(LayerNorm + 3 layers, 8 outputs with the FoV)"),
    (r"downstream_head\.final_transform\.",
     "CUT3R's pose-conditioned (ModLN) transformer blocks inside its head; Mem4D has no counterpart"),
)


def _dpt_pairs(ours: str, theirs: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for i in range(4):
        for p in ("weight", "bias"):
            pairs[f"{ours}.project.{i}.{p}"] = f"{theirs}.act_postprocess.{i}.0.{p}"
            if i != 2:  # map 2 is not resampled
                pairs[f"{ours}.resample.{i}.{p}"] = f"{theirs}.act_postprocess.{i}.1.{p}"
            for unit, cut3r_unit in (("skip_unit", "resConfUnit1"), ("unit", "resConfUnit2")):
                if unit == "skip_unit" and i == 3:
                    continue
                for conv in ("conv1", "conv2"):
                    pairs[f"{ours}.fusion.{i}.{unit}.{conv}.{p}"] = f"{theirs}.scratch.refinenet{i + 1}.{cut3r_unit}.{conv}.{p}"
            pairs[f"{ours}.fusion.{i}.out_conv.{p}"] = f"{theirs}.scratch.refinenet{i + 1}.out_conv.{p}"
        pairs[f"{ours}.to_features.{i}.weight"] = f"{theirs}.scratch.layer{i + 1}_rn.weight"
    for ours_conv, theirs_conv in (("out_conv1", "head.0"), ("out_conv2", "head.2"), ("out_conv3", "head.4")):
        for p in ("weight", "bias"):
            pairs[f"{ours}.{ours_conv}.{p}"] = f"{theirs}.{theirs_conv}.{p}"
    return pairs


def cut3r_key_map(model_keys: list[str] | None = None) -> dict[str, str]:
    """Mem4D state-dict key -> CUT3R key for every tensor with a CUT3R counterpart.

    Args:
        model_keys: the model's state-dict keys; encoder keys are taken from them (``encoder.X``
            <- ``X`` for CUT3R's encoder prefixes). None: the map without the encoder.
    """
    pairs = {"proj.weight": "decoder_embed.weight", "proj.bias": "decoder_embed.bias", "camera_token": "pose_token"}
    for ours, theirs in _DPT_HEADS.items():
        pairs.update(_dpt_pairs(ours, theirs))
    for key in model_keys or []:
        inner = key[len("encoder."):]
        if key.startswith("encoder.") and inner.startswith(ENCODER_PREFIXES):
            pairs[key] = inner
    return pairs


@dataclass
class Cut3rLoadReport:
    """What `load_cut3r_weights` did.

    Attributes:
        loaded: (Mem4D key, CUT3R key, shape) of every tensor copied.
        skipped: (CUT3R key, reason) of every checkpoint tensor not copied.
        fresh: Mem4D keys that keep their initialisation (no CUT3R counterpart or no fit).
    """

    loaded: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)

    def loaded_components(self) -> dict[str, int]:
        """Tensors loaded per top-level Mem4D component (``encoder``, ``proj``, ``head_world``...)."""
        out: dict[str, int] = {}
        for ours, _, _ in self.loaded:
            out[ours.split(".")[0]] = out.get(ours.split(".")[0], 0) + 1
        return out

    def summary(self) -> str:
        """A readable account: loaded per component, skipped per reason (with key counts), fresh modules."""
        lines = [f"loaded {len(self.loaded)} tensors from CUT3R: "
                 + ", ".join(f"{k} {v}" for k, v in self.loaded_components().items())]
        reasons: dict[str, list[str]] = {}
        for key, reason in self.skipped:
            reasons.setdefault(reason, []).append(key)
        lines.append(f"skipped {len(self.skipped)} CUT3R tensors:")
        lines += [f"  {len(keys):4d} ({keys[0]}, ...): {reason}" for reason, keys in reasons.items()]
        modules = sorted({k.split(".")[0] for k in self.fresh})
        lines.append(f"{len(self.fresh)} Mem4D tensors keep their initialisation ({', '.join(modules)})")
        return "\n".join(lines)


def _skip_reason(key: str) -> str:
    for pattern, reason in _SKIP_REASONS:
        if re.match(pattern, key):
            return reason
    return "no counterpart in Mem4D"


def load_cut3r_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, Tensor]) -> Cut3rLoadReport:
    """Copies every CUT3R tensor with a Mem4D counterpart of the same shape into ``model``.

    Args:
        model: a `Mem4D` (the ``paper`` preset fits CUT3R's ViT-L checkpoints; on the meta
            device the tensors are assigned, not copied).
        source: a CUT3R checkpoint file (``.pth`` read safely, or ``.safetensors``) or its state dict.

    Returns:
        The `Cut3rLoadReport`: what was loaded, what was skipped and why, what starts fresh.

    Each component (encoder, ``proj``, ``camera_token``, each DPT head) loads whole or not at
    all: one that does not fit in shape is skipped with the mismatch as its reason.

    Raises:
        ValueError: the encoder does not fit (e.g. a ``tiny`` model); the message gives a mismatch.
    """
    state = dict(source) if isinstance(source, Mapping) else load_state_dict_file(source)
    own = model.state_dict()
    by_cut3r = {theirs: ours for ours, theirs in cut3r_key_map(list(own)).items()}
    # A component (encoder, proj, camera_token, head_world, head_cam) loads whole or not at all.
    misfit: dict[str, str] = {}
    for key, tensor in state.items():
        ours = by_cut3r.get(key)
        if ours in own and tuple(own[ours].shape) != tuple(tensor.shape):
            misfit.setdefault(ours.split(".")[0], f"{key} {tuple(tensor.shape)} vs {ours} {tuple(own[ours].shape)}")
    if "encoder" in misfit or not any(by_cut3r.get(k) in own for k in state):
        raise ValueError(f"this CUT3R checkpoint does not fit the model's encoder ({misfit.get('encoder', 'no encoder keys')}); "
                         "CUT3R's checkpoints are ViT-L: build Mem4DConfig.paper()")
    report = Cut3rLoadReport()
    chosen: dict[str, Tensor] = {}
    for key, tensor in state.items():
        ours = by_cut3r.get(key)
        if ours is None:
            report.skipped.append((key, _skip_reason(key)))
        elif ours not in own:
            report.skipped.append((key, f"this model has no {ours} (its config does not build that part)"))
        elif ours.split(".")[0] in misfit:
            report.skipped.append((key, f"{ours.split('.')[0]} does not fit (e.g. {misfit[ours.split('.')[0]]})"))
        else:
            chosen[ours] = tensor
            report.loaded.append((ours, key, tuple(tensor.shape)))
    report.fresh = [k for k in own if k not in chosen]
    on_meta = any(t.is_meta for t in own.values())
    model.load_state_dict(chosen, strict=False, assign=on_meta)
    return report
