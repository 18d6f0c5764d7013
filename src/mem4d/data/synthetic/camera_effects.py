"""Camera effects of the realistic appearance: what a real camera does to the light it records.

Applied to rendered images only (depth, poses, masks and scene flow stay exact), in the order
of a camera's pipeline, in linear light (the renders are read as sRGB-like, gamma 2.2):

1. motion blur: each pixel integrates the scene along its own image motion during the exposure
   (the shutter is open a fraction of the frame interval); the motion comes from the exact depth,
   the camera poses and the scene flow, so it follows the camera and the moving objects;
2. exposure: auto-exposure brings the clip's mean brightness to a target grey, then misses it
   by a per-clip offset and drifts slowly (in stops);
3. vignetting: brightness falls off towards the corners, 1 / (1 + a rho^2)^2;
4. sensor noise: shot noise (variance proportional to the signal) plus read noise;
5. white balance: per-channel gains along the warm-cool and green-magenta axes, per clip with a
   slow drift (auto white balance wandering);
6. gamma back to display values, clipping, 8-bit quantisation, JPEG compression (PIL/libjpeg).

`draw_camera_effects` always draws the same random numbers (whichever parts are on), so
switching one part off leaves the others' draws unchanged.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .appearance import Appearance
from .camera_paths import smooth_noise

GAMMA = 2.2
MAX_BLUR_TAPS = 7
MOTION_STRIDE = 4  # image motion is computed on every 4th row and column, then interpolated
BLUR_TAP_SPACING = 2.0  # pixels between samples along the blur (bilinear samples fill the gaps)


@dataclass
class CameraEffects:
    """One clip's camera, drawn by `draw_camera_effects` (zero / None: that effect is off)."""

    exposure_stops: np.ndarray  # (T,) exposure error of each frame in stops (offset + drift)
    exposure_target: float | None  # auto-exposure's target mean display brightness (None: off)
    vignetting: float  # brightness lost in the image corners, 0..1
    shutter: float  # exposure time as a fraction of the frame interval (length of the motion blur)
    shot_noise: float  # noise variance per unit of linear signal
    read_noise: float  # noise std in linear units
    white_balance: np.ndarray  # (T, 3) per-channel gains
    jpeg_quality: int | None  # None: no JPEG (8-bit quantisation only)
    quantise: bool  # round to 8 bits like a video frame
    noise_seed: int

    def summary(self) -> dict:
        """JSON-able description for the sample's meta."""
        return {
            "exposure_target": None if self.exposure_target is None else round(self.exposure_target, 3),
            "exposure_stops": [round(float(self.exposure_stops.min()), 3), round(float(self.exposure_stops.max()), 3)],
            "vignetting": round(self.vignetting, 3),
            "shutter": round(self.shutter, 3),
            "shot_noise": float(f"{self.shot_noise:.3g}"),
            "read_noise": float(f"{self.read_noise:.3g}"),
            "white_balance": [round(float(v), 3) for v in self.white_balance.mean(0)],
            "jpeg_quality": self.jpeg_quality,
        }


def draw_camera_effects(rng: np.random.Generator, num_frames: int, appearance: Appearance) -> CameraEffects:
    """A clip's camera effects (the parts of `appearance` that are off are neutral)."""
    T = int(num_frames)
    drift = smooth_noise(rng, T, 3, timescale=float(rng.uniform(25.0, 60.0)))  # exposure, warm-cool, tint
    target, exposure0, exposure_amp = rng.uniform(0.38, 0.55), rng.uniform(-0.5, 0.4), rng.uniform(0.0, 0.35)
    vignetting = rng.uniform(0.0, 0.45)
    shutter = rng.uniform(0.05, 0.7)  # 1/600 s to 1/45 s at 30 frames/s
    shot = math.exp(rng.uniform(math.log(1e-4), math.log(2e-3)))
    read = math.exp(rng.uniform(math.log(3e-4), math.log(5e-3)))
    warm0, tint0, wb_amp = rng.uniform(-0.2, 0.2), rng.uniform(-0.06, 0.06), rng.uniform(0.0, 0.06)
    jpeg_on, quality = rng.random() < 0.9, int(rng.integers(50, 96))
    noise_seed = int(rng.integers(2**62))

    warm = warm0 + wb_amp * drift[:, 1]
    tint = tint0 + 0.5 * wb_amp * drift[:, 2]
    log_gain = np.stack([warm - tint / 2, tint, -warm - tint / 2], -1)
    log_gain -= log_gain.mean(-1, keepdims=True)  # balance, not brightness
    a = appearance
    return CameraEffects(
        exposure_stops=exposure0 + exposure_amp * drift[:, 0] if a.exposure else np.zeros(T),
        exposure_target=float(target) if a.exposure else None,
        vignetting=float(vignetting) if a.vignetting else 0.0,
        shutter=float(shutter) if a.motion_blur else 0.0,
        shot_noise=float(shot) if a.sensor_noise else 0.0,
        read_noise=float(read) if a.sensor_noise else 0.0,
        white_balance=np.exp(log_gain) if a.white_balance else np.ones((T, 3)),
        jpeg_quality=quality if a.jpeg and jpeg_on else None,
        quantise=a.camera_effects,
        noise_seed=noise_seed,
    )


def image_motion(
    depth: Tensor, valid: Tensor, intrinsics: Tensor, cam2world: Tensor, scene_flow: Tensor, stride: int = 1
) -> Tensor:
    """Each pixel's image motion per frame interval, (T, H, W, 2) in pixels (central difference).

    Pixels with depth follow their 3D point (moved by the scene flow); the others (sky) are at
    infinity and move with the camera's rotation only. A point that leaves the front of a
    neighbouring camera gets no motion from it. With `stride` > 1 the motion is computed on
    every stride-th row and column and interpolated bilinearly (it is smooth but at edges).
    """
    T, H, W = depth.shape
    if T < 2:
        return torch.zeros(T, H, W, 2)
    rows = torch.linspace(0, H - 1, max(2, -(-H // stride))).round().long() if stride > 1 else torch.arange(H)
    cols = torch.linspace(0, W - 1, max(2, -(-W // stride))).round().long() if stride > 1 else torch.arange(W)
    h, w_ = len(rows), len(cols)
    K = intrinsics[0]
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    v, u = torch.meshgrid(rows.float(), cols.float(), indexing="ij")
    pix = torch.stack([u, v], -1).view(1, h * w_, 2)
    rays = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)], -1).view(1, h * w_, 3)
    ok = valid[:, rows][:, :, cols]
    w = ok.reshape(T, h * w_, 1).float()  # 1: a point, 0: a direction (no depth: at infinity)
    d = torch.where(ok, depth[:, rows][:, :, cols], 1.0).reshape(T, h * w_, 1)
    R, c = cam2world[:, :3, :3], cam2world[:, :3, 3].view(T, 1, 3)
    world = torch.bmm(rays * d, R.transpose(1, 2)) + c * w  # (T, hw, 3)
    flow = scene_flow[:, rows][:, :, cols].reshape(T, h * w_, 3) * w

    motion = torch.zeros(T, h * w_, 2)
    weight = torch.zeros(T, 1, 1)
    for step in (1, -1):  # the next frame, then the previous one (its motion counted forwards)
        a, b = (0, T - 1) if step == 1 else (1, T)  # frames that have that neighbour
        n = slice(a + step, b + step)
        local = torch.bmm(world[a:b] + step * flow[a:b] - c[n] * w[a:b], R[n])  # in the neighbour's camera
        z = local[..., 2:3]
        front = (z > 1e-3).float()
        z = z.clamp_min(1e-3)
        uv = torch.cat([fx * local[..., :1] / z + cx, fy * local[..., 1:2] / z + cy], -1)
        motion[a:b] += (uv - pix) * (step * front)
        weight[a:b] += 1.0
    motion = (motion / weight).view(T, h, w_, 2)
    limit = 0.1 * max(H, W)  # a point crossing the near plane would smear across the frame
    motion = motion * (limit / motion.norm(dim=-1, keepdim=True).clamp_min(limit))
    if stride > 1:
        motion = F.interpolate(motion.permute(0, 3, 1, 2), size=(H, W), mode="bilinear", align_corners=True)
        motion = motion.permute(0, 2, 3, 1)
    return motion


def motion_blur(linear: Tensor, motion: Tensor, shutter: float) -> Tensor:
    """Averages (T, 3, H, W) `linear` along each pixel's motion (T, H, W, 2) during `shutter` of a frame."""
    T, _, H, W = linear.shape
    blur = motion * shutter
    # taps for the longest blur but a few near pixels (those get sparser, still bilinear, samples)
    length = float(torch.quantile(blur.reshape(-1, 2)[::7].norm(dim=-1), 0.98)) if blur.numel() else 0.0
    if length < 0.25:
        return linear
    taps = min(MAX_BLUR_TAPS, 2 + math.floor(length / BLUR_TAP_SPACING))
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    scale = torch.tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)])
    base = torch.stack([u, v], -1) * scale - 1.0  # align_corners=True grid of the pixels
    step = blur * scale
    out = torch.zeros_like(linear)
    for s in torch.linspace(-0.5, 0.5, taps).tolist():
        grid = base + s * step
        out += F.grid_sample(linear, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out / taps


def auto_exposure(linear: Tensor, target: float, max_stops: float = 2.0) -> float:
    """The gain that brings the clip's mean brightness to `target` (display value), within
    +-`max_stops`, as a camera's auto-exposure would (metered on the whole clip)."""
    mean = float(linear[:, :, ::4, ::4].mean()) ** (1.0 / GAMMA)
    stops = math.log2(max(target, 1e-3) / max(mean, 1e-3)) * GAMMA
    return 2.0 ** min(max(stops, -max_stops), max_stops)


def vignetting_gain(H: int, W: int, strength: float) -> Tensor:
    """(H, W) brightness gain 1 / (1 + a rho^2)^2, rho = distance from the centre / to a corner."""
    a = (1.0 - strength) ** -0.5 - 1.0
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    rho2 = ((u - (W - 1) / 2) ** 2 + (v - (H - 1) / 2) ** 2) / (((W - 1) / 2) ** 2 + ((H - 1) / 2) ** 2 + 1e-9)
    return (1.0 + a * rho2) ** -2


def jpeg_round_trip(images: Tensor, quality: int | None) -> Tensor:
    """(T, 3, H, W) display images quantised to 8 bits and, with a quality, JPEG-compressed."""
    from PIL import Image

    frames = (images.permute(0, 2, 3, 1) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    if quality is not None:
        out = np.empty_like(frames)
        for i, frame in enumerate(frames):
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
            buf.seek(0)
            out[i] = np.asarray(Image.open(buf).convert("RGB"))
        frames = out
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def apply_camera_effects(
    images: Tensor, effects: CameraEffects, depth: Tensor, valid: Tensor, intrinsics: Tensor, cam2world: Tensor,
    scene_flow: Tensor,
) -> Tensor:
    """(T, 3, H, W) images in [0, 1] as the camera of `effects` would have recorded them."""
    T, _, H, W = images.shape
    linear = images.clamp(0.0, 1.0).pow(GAMMA)
    if effects.shutter > 0 and T > 1:
        motion = image_motion(depth, valid, intrinsics, cam2world, scene_flow, stride=MOTION_STRIDE)
        linear = motion_blur(linear, motion, effects.shutter)
    gain = torch.from_numpy(np.exp2(effects.exposure_stops)).float().view(T, 1, 1, 1)
    if effects.exposure_target is not None:
        gain = gain * auto_exposure(linear, effects.exposure_target)
    if effects.vignetting > 0:
        gain = gain * vignetting_gain(H, W, effects.vignetting)
    linear = linear * gain
    if effects.shot_noise > 0 or effects.read_noise > 0:
        g = torch.Generator().manual_seed(effects.noise_seed)
        std = (linear.clamp_min(0.0) * effects.shot_noise + effects.read_noise**2).sqrt_()
        linear = linear + std * torch.randn(linear.shape, generator=g)
    linear = linear * torch.from_numpy(effects.white_balance).float().view(T, 3, 1, 1)
    display = linear.clamp_(0.0, 1.0).pow_(1.0 / GAMMA)
    if effects.quantise:
        display = jpeg_round_trip(display, effects.jpeg_quality)
    return display
