"""Mem4D (arXiv 2508.07908): online 4D reconstruction with a dual (transient / persistent) memory.

The model holds only parameters; all memory lives in the `StreamState` that ``step`` returns::

    model = Mem4D(Mem4DConfig.tiny()).eval()
    state = model.init_state(batch_size=1, image_size=(64, 64))
    out, state = model.step(frame, state)     # frame (B, 3, H, W) in [0, 1] -> FrameOutput
    seq = model(clip)                         # clip (B, T, 3, H, W) -> SequenceOutput (loop over step)

One step (``step``): encoder E -> linear E->D (F_t) -> TCA over F_t and the last W past F ->
x_t; TDM tokens from correlations of F_t with the last 2 past F; compressed PSM readout; the
fusion decoder over [x_t ; camera token]; two DPT pointmap heads (encoder output + 3 decoder
stages), the camera MLP, the optional motion head; then the PSM write of E_p(X^g_t).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import NamedTuple

import torch
from torch import Tensor, nn

from mem4d.config import Mem4DConfig
from mem4d.layers.rope import RotaryEmbedding
from mem4d.model.camera_head import CameraHead, chain_pose
from mem4d.geometry.photometric import warp_residual
from mem4d.geometry.se3 import se3_inverse, transform_points
from mem4d.model.checkpointing import CheckpointedBlocks
from mem4d.model.correspondence import CorrespondenceHead
from mem4d.model.decoder import FusionDecoder
from mem4d.model.depth_scale import DepthScaleHead
from mem4d.model.encoder import ImageEncoder
from mem4d.model.heads import PointmapHead
from mem4d.model.loop_closure import close_loop
from mem4d.model.motion_head import MotionHead
from mem4d.model.outputs import FrameOutput, SequenceOutput
from mem4d.model.positions import frame_positions
from mem4d.model.pose_refinement import refine_pose
from mem4d.model.procrustes_pose import epipolar_distance, fit_points, motion_evidence, procrustes_motion, scale_gradient
from mem4d.model.psm import PersistentStructureMemory
from mem4d.model.state import StreamState, validate_frame
from mem4d.model.tca import TemporalContextAggregator
from mem4d.model.tdm import TransientDynamicsMemory
from mem4d.model.unified import UnifiedMemory

__all__ = ["Mem4D"]


class Match(NamedTuple):
    """What the correspondence head and the pose fit of one frame hand on ("procrustes")."""

    feats: Tensor  # (B, C + 3, H/4, W/4) matching features of frame t (frame t+1 matches against them)
    flow: Tensor  # (B, H/4, W/4, 2) backward flow into frame t-1, pixels (zeros at frame 0)
    weight: Tensor  # (B, H/4, W/4) the fit's weight per cell
    evidence: Tensor | None  # (B, 4, H/4, W/4) the fit's motion evidence; None at frame 0
    guide: Tensor  # (B, C + 3 [+ 1], H/4, W/4) the mask refinement's input: feats [+ the epipolar distance]


class Mem4D(nn.Module):
    """The network of ``config`` (a `Mem4DConfig`: preset, sizes and variant)."""

    def __init__(self, config: Mem4DConfig) -> None:
        super().__init__()
        if not isinstance(config, Mem4DConfig):
            raise ValueError(f"Mem4D needs a Mem4DConfig (e.g. Mem4DConfig.tiny()), got {type(config).__name__}")
        cfg = self.config = config
        E, D, p = cfg.encoder.width, cfg.dim, cfg.encoder.patch_size
        enc = cfg.encoder
        self.encoder = ImageEncoder(enc.width, enc.depth, enc.num_heads, p, enc.mlp_ratio, enc.rope_base)
        self.proj = nn.Linear(E, D)
        self.rope = RotaryEmbedding(D // cfg.num_heads, num_axes=3, base=cfg.rope_base)  # (t, y, x), no parameters
        self.tca = TemporalContextAggregator(cfg, self.rope) if cfg.use_tca else None
        self.tdm = TransientDynamicsMemory(cfg, self.rope) if cfg.use_tdm else None
        self.psm = PersistentStructureMemory(cfg, self.rope) if cfg.use_psm else None
        self.unified = UnifiedMemory(cfg, self.rope) if cfg.use_unified else None
        self.camera_token = nn.Parameter(torch.zeros(1, 1, D))
        self.decoder = FusionDecoder(cfg, self.rope)
        procrustes = cfg.heads.camera_pose == "procrustes"  # pts_world = cam2world . pts_cam: no world head
        self.head_world = None if procrustes else PointmapHead((E, D, D, D), cfg.heads, p)
        self.head_cam = PointmapHead((E, D, D, D), cfg.heads, p)
        self.head_cam_large = PointmapHead((E, D, D, D), cfg.heads, p) if cfg.heads.large_input_head else None
        self.depth_scale = DepthScaleHead(D, E, cfg.heads.depth_scale_hidden) if cfg.heads.depth_scale else None
        self.camera_head = CameraHead(D, cfg.heads.camera_hidden)
        h = cfg.heads
        self.correspondence = (CorrespondenceHead(D, h.flow_features, h.flow_hidden, h.flow_radius, h.flow_levels)
                               if procrustes else None)
        # the refinement's image guide: the correspondence head's matching features [+ the epipolar distance]
        guide = h.flow_features + 3 + int(h.motion_epipolar) if h.motion_refine else 0
        self.motion_head = (MotionHead(D, p, evidence_channels=4 if procrustes else 0, guide_channels=guide,
                                       photometric=h.motion_photometric) if h.motion else None)
        self.reset_parameters()
        self.encoder.requires_grad_(enc.trainable)

    def reset_parameters(self) -> None:
        """Truncated-normal (0.02) linears outside the encoder; camera head starts at FoV 60 deg, identity pose."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and not name.startswith("encoder."):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.camera_token, std=0.02)
        self.camera_head.reset_parameters()
        if self.depth_scale is not None:
            self.depth_scale.reset_parameters()
        if self.correspondence is not None:
            self.correspondence.reset_parameters()
        if self.unified is not None:
            self.unified.reset_parameters()

    # ----- streaming -----
    def init_state(self, batch_size: int = 1, image_size: tuple[int, int] | None = None) -> StreamState:
        """An empty stream of ``batch_size`` lockstep streams of ``image_size`` (H, W) frames."""
        H, W = image_size if image_size is not None else self.config.image_size
        p = self.config.encoder.patch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if H <= 0 or W <= 0 or H % p or W % p:
            raise ValueError(f"image_size {H}x{W} (HxW) must be positive multiples of the patch size {p}; "
                             f"resize or crop frames, e.g. to {max(p, H // p * p)}x{max(p, W // p * p)}")
        return StreamState(batch_size=batch_size, image_size=(int(H), int(W)))

    def step(self, frame: Tensor, state: StreamState) -> tuple[FrameOutput, StreamState]:
        """Predicts frame ``state.frame_index`` and returns the new state (``state`` is not modified).

        Args:
            frame: (B, 3, H, W) RGB in [0, 1], on the model's device.
            state: from ``init_state`` or a previous ``step``.

        Returns:
            (`FrameOutput`: pts_world / pts_cam (B, H, W, 3), conf_world / conf_cam / depth
            (B, H, W), intrinsics (B, 3, 3), cam2world (B, 4, 4), fov_x (B,), quat_wxyz (B, 4),
            translation (B, 3), dynamic_prob (B, H, W) or None; the next `StreamState`).
        """
        validate_frame(frame, state)
        self._check_state(state, frame)
        cfg, t, B = self.config, state.frame_index, state.batch_size
        (H, W), p = state.image_size, cfg.encoder.patch_size
        grid = (H // p, W // p)
        N = grid[0] * grid[1]
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.encoder.trainable):
            enc = self.encoder(frame.to(self.proj.weight.dtype))  # (B, N, E); a no-op unless the model was cast
        feat = self.proj(enc)  # F_t (B, N, D)
        x = self.tca(feat, state.feats, grid) if self.tca is not None else feat
        enriched = cfg.tdm.input == "enriched"  # the TDM correlates x_t with x_{t-k} instead of F_t with F_{t-k}
        tdm_in, tdm_past = (x, state.tdm_feats) if enriched else (feat, state.feats)
        tdm = self.tdm(tdm_in, tdm_past, grid) if self.tdm is not None else None
        readout = self.psm.readout(state.psm_frames, state.psm_tokens, t, grid, state.psm_cache) if self.psm else None
        spatial = readout[:2] if readout is not None else None
        motion = tdm
        if self.unified is not None:
            mem = state.unified if state.unified is not None else self.unified.initial(B)
            motion = spatial = (mem, self.unified.positions(frame.device))
        cam_pos = torch.tensor([[0.0, (grid[0] - 1) / 2, (grid[1] - 1) / 2]], device=frame.device)
        pos = torch.cat([frame_positions(grid, 0.0, frame.device), cam_pos]).unsqueeze(0).expand(B, -1, -1)
        tokens = torch.cat([x, self.camera_token.expand(B, -1, -1).to(x.dtype)], dim=1)
        stages = self.decoder(tokens, pos, motion, spatial)  # L x (B, N+1, D)
        dpt_in = [enc] + [stages[i - 1][:, :N] for i in cfg.decoder.dpt_stages()]
        pts_cam, conf_cam = self._camera_pointmap_head(H, W)(dpt_in, grid)
        if self.depth_scale is not None:  # one factor per frame, before anything reads pts_cam
            log_scale = self.depth_scale(stages[-1][:, N], stages[-1][:, :N], enc, pts_cam[..., 2])
            pts_cam = pts_cam * log_scale.exp().to(pts_cam.dtype)[:, None, None, None]
        cam = self.camera_head(stages[-1][:, N], (H, W), anchor=t == 0 and cfg.heads.anchor_first)
        if cfg.heads.camera_pose == "chained" and t > 0:  # the head gave camera t -> camera t-1
            cam = chain_pose(cam, state.cam2world)
        match = None
        if self.correspondence is not None:  # "procrustes": the pose from matches and the pointmaps
            # the pose and the world loss (read through a pose that may be wrong) would bend the depth to fit them
            posed = fit_points(pts_cam, cam["intrinsics"], cfg.heads.fit_points, cfg.heads.depth_grad_from_pose)
            cam, match = self._procrustes_pose(frame, cam, posed, stages[-1][:, :N], state, grid)
            pts_world, conf_world = transform_points(cam["cam2world"][:, None, None], posed), conf_cam
        else:
            pts_world, conf_world = self.head_world(dpt_in, grid)
        dyn = None
        if self.motion_head is not None:
            dyn = self.motion_head(stages[-1][:, :N], tdm[0][:, :N] if tdm is not None else None, grid,
                                   None if match is None else match.evidence, None if match is None else match.guide)
        flow = {} if match is None else {"flow": match.flow, "flow_weight": match.weight}
        out = FrameOutput(pts_world=pts_world, conf_world=conf_world, pts_cam=pts_cam, conf_cam=conf_cam,
                          depth=pts_cam[..., 2], dynamic_prob=dyn, **cam, **flow)
        new_state = self._next_state(state, feat, stages[-1], pos, out, grid, readout,
                                     None if match is None else (match.feats, fit_points(pts_cam, out.intrinsics,
                                                                                      cfg.heads.fit_points, 1.0)))
        if self.tdm is not None and enriched:
            new_state = replace(new_state, tdm_feats=[*state.tdm_feats, x][-cfg.tdm.num_past:])
        if cfg.heads.pose_refinement == "photometric":
            start = None  # the network's own motion t-1 -> t is the refinement's first start
            if self.correspondence is not None and t > 0:
                start = se3_inverse(out.cam2world.detach().float()) @ state.cam2world.float()
            out, new_state = refine_pose(frame, out, state, new_state, start_a2b=start,
                                         select_after=cfg.heads.refine_select_after or None,
                                         probes=cfg.heads.refine_probes, focal=cfg.heads.refine_focal,
                                         scale_keep=cfg.heads.refine_scale)
            if cfg.heads.motion_photometric and t > 0 and match is not None and out.dynamic_prob is not None:
                out, new_state = self._recheck_motion(frame, out, state, new_state, match.guide)
            if cfg.heads.loop_closure:
                out, new_state = close_loop(frame, out, state, new_state, t)
        return out, new_state

    def _camera_pointmap_head(self, H: int, W: int) -> PointmapHead:
        """``head_cam``, or with ``heads.large_input_head`` ``head_cam_large`` for frames whose area
        is larger than ``image_size``'s."""
        if self.head_cam_large is not None and H * W > self.config.image_size[0] * self.config.image_size[1]:
            return self.head_cam_large
        return self.head_cam

    def init_copies(self) -> dict[str, str]:
        """Modules that start as a copy of another when a fine-tune adds them: {new: source}."""
        return {"head_cam_large": "head_cam"} if self.head_cam_large is not None else {}

    def _recheck_motion(self, frame: Tensor, out: FrameOutput, state: StreamState, new_state: StreamState,
                        guide: Tensor) -> tuple[FrameOutput, StreamState]:
        """``heads.motion_photometric``: the mask rechecked against the photometric residual of
        frame t against frame t-1 under the refined motion (``new_state.pose_velocity``: t-1 -> t);
        the rechecked mask also weights frame t in the next frame's alignment."""
        with torch.no_grad():
            residual, inside = warp_residual(frame, out.depth.detach(), state.prev_image, out.intrinsics.detach(),
                                             se3_inverse(new_state.pose_velocity.float()))
        dyn = self.motion_head.recheck(out.dynamic_prob, residual, inside, guide)
        return replace(out, dynamic_prob=dyn), replace(new_state, prev_weight=1 - dyn.detach().float())

    def _procrustes_pose(self, frame: Tensor, cam: dict[str, Tensor], pts_cam: Tensor, tokens: Tensor,
                         state: StreamState, grid: tuple[int, int]) -> tuple[dict[str, Tensor], Match]:
        """Replaces the camera head's pose by the chained Procrustes motion (frame 0 keeps the identity).
        ``pts_cam`` arrives with its gradient already scaled by ``heads.depth_grad_from_pose``.

        Returns (camera dict, `Match`); at frame 0 the flow and weight are zeros, the evidence
        None and the epipolar distance of the guide zeros.
        """
        feats = self.correspondence.features(frame)
        epipolar = self.config.heads.motion_epipolar
        if state.frame_index == 0:
            B, _, h4, w4 = feats.shape
            guide = torch.cat([feats, feats.new_zeros(B, 1, h4, w4)], 1) if epipolar else feats
            return cam, Match(feats, pts_cam.new_zeros(B, h4, w4, 2), pts_cam.new_zeros(B, h4, w4), None, guide)
        flow, logit = self.correspondence(feats, state.prev_match_feats, tokens, grid)
        weight = torch.sigmoid(logit)
        prev = scale_gradient(state.prev_pts_cam, self.config.heads.depth_grad_from_pose)  # pts_cam comes scaled
        motion = procrustes_motion(pts_cam, prev, flow, weight, intrinsics=cam["intrinsics"],
                                   reprojection_iters=self.config.heads.reprojection_iters)  # camera t -> camera t-1
        evidence = motion_evidence(pts_cam, state.prev_pts_cam, flow, weight, motion, cam["intrinsics"])
        guide = feats
        if epipolar:
            guide = torch.cat([feats, epipolar_distance(flow, motion, cam["intrinsics"]).to(feats.dtype)], 1)
        return chain_pose({**cam, "cam2world": motion}, state.cam2world), Match(feats, flow, weight, evidence, guide)

    def _next_state(self, state: StreamState, feat: Tensor, last: Tensor, pos: Tensor, out: FrameOutput,
                    grid: tuple[int, int], readout: tuple | None,
                    match: tuple[Tensor, Tensor] | None = None) -> StreamState:
        """The state after frame t; ``match``: (matching features, the points of the pose fit) for "procrustes"."""
        cfg, t, N, pts_world = self.config, state.frame_index, feat.shape[1], out.pts_world
        new = replace(state, frame_index=t + 1, feats=[*state.feats, feat][-cfg.history:] if cfg.history else [])
        if cfg.heads.camera_pose in ("chained", "procrustes"):
            new = replace(new, cam2world=out.cam2world)
        if match is not None:
            new = replace(new, prev_match_feats=match[0], prev_pts_cam=match[1])
        if self.psm is not None:  # write P_t after frame t is predicted
            frames, tokens, scale = self.psm.write(state.psm_frames, state.psm_tokens, state.psm_scale, t,
                                                   pts_world, grid, last[:, :N])
            new = replace(new, psm_frames=frames, psm_tokens=tokens, psm_scale=scale,
                          psm_cache=readout[2] if readout is not None else {})
        if self.unified is not None:
            mem = state.unified if state.unified is not None else self.unified.initial(state.batch_size)
            new = replace(new, unified=self.unified.update(mem, last, pos))
        return new

    def _check_state(self, state: StreamState, frame: Tensor) -> None:
        dev = state.device
        if dev is not None and dev != frame.device:
            raise ValueError(f"frame is on {frame.device} but the stream state on {dev}; move one (state.to(device))")
        if state.feats and state.feats[-1].shape[-1] != self.config.dim:
            raise ValueError(f"state has width {state.feats[-1].shape[-1]} but this model D={self.config.dim}: "
                             "it belongs to another model; call init_state")

    def forward(self, clip: Tensor, state: StreamState | None = None, *, detach_every: int | None = None) -> SequenceOutput:
        """Runs ``step`` over a clip (B, T, 3, H, W) in [0, 1] -> `SequenceOutput` (fields (B, T, ...))."""
        return self.stream(clip, state, detach_every=detach_every)[0]

    def stream(self, clip: Tensor, state: StreamState | None = None, *,
               detach_every: int | None = None) -> tuple[SequenceOutput, StreamState]:
        """Like ``forward`` but also returns the final state; ``detach_every=k`` detaches the
        state every k frames (truncated back-propagation through time)."""
        if not isinstance(clip, Tensor) or clip.dim() != 5 or clip.shape[2] != 3 or clip.shape[1] < 1:
            shape = tuple(clip.shape) if isinstance(clip, Tensor) else type(clip).__name__
            raise ValueError(f"expected a clip (B, T, 3, H, W) with T >= 1, got {shape}; for one frame use step()")
        if state is None:
            state = self.init_state(clip.shape[0], (clip.shape[-2], clip.shape[-1]))
        outs = []
        for i in range(clip.shape[1]):
            out, state = self.step(clip[:, i], state)
            outs.append(out)
            if detach_every and (i + 1) % detach_every == 0:
                state = state.detach()
        return SequenceOutput.stack(outs), state

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute block activations in the backward pass (training memory <-> ~30 % compute)."""
        for module in self.modules():
            if isinstance(module, CheckpointedBlocks):
                module.gradient_checkpointing = bool(enabled)

    # ----- weights -----
    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def parameter_breakdown(self) -> dict[str, int]:
        """Parameters per top-level component (encoder, proj, tca, tdm, psm, unified, decoder, heads...)."""
        out: dict[str, int] = {}
        for name, p in self.named_parameters():
            key = name.split(".")[0]
            out[key] = out.get(key, 0) + p.numel()
        return out

    def load_encoder_weights(self, path: str | os.PathLike) -> None:
        """Loads a (CUT3R) encoder checkpoint into ``self.encoder`` (see `mem4d.model.weights`)."""
        from mem4d.model.weights import load_encoder_weights

        load_encoder_weights(self.encoder, path)

    def save_pretrained(
        self, directory: str | os.PathLike, dtype: torch.dtype | None = None, about: dict | None = None,
        max_shard_mb: float | None = None,
    ) -> None:
        """Writes ``config.json`` and ``model.safetensors`` into ``directory`` (atomically); ``dtype``
        casts the stored floating tensors (loading casts them back to the model's float32);
        ``max_shard_mb`` splits larger weights into shards of at most that size."""
        from mem4d.model.pretrained import save_pretrained

        save_pretrained(self, directory, dtype=dtype, about=about, max_shard_mb=max_shard_mb)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> Mem4D:
        """Loads a directory written by ``save_pretrained``; ``"default"`` is the shipped model."""
        from mem4d.model.pretrained import load_pretrained

        return load_pretrained(cls, directory, map_location)
