"""Every variant runs forward over a clip and trains one step: grads finite and non-zero."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import build_tiny, make_clip

from mem4d.config import VARIANTS, Mem4DConfig

pytestmark = pytest.mark.usefixtures("single_thread")

# 7 frames at 32x32: reaches the TCA's stride-4 conv (k >= 4) and the PSM's second tier (d >= 5).
T, H, W = 7, 32, 32


def _simple_loss(seq) -> torch.Tensor:
    loss = seq.pts_world.abs().mean() + seq.pts_cam.abs().mean() + seq.conf_world.log().mean() + seq.conf_cam.log().mean()
    loss = loss + seq.fov_x.mean() + seq.quat_wxyz[:, 1:].sum(-1).mean() + seq.translation.sum(-1).mean()
    if seq.dynamic_prob is not None:
        loss = loss + seq.dynamic_prob.mean()
    return loss


def _train_step(model) -> None:
    model.train()
    seq = model(make_clip(T, H=H, W=W, seed=9))
    loss = _simple_loss(seq)
    assert torch.isfinite(loss)
    loss.backward()
    missing, bad, zero = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            missing.append(name)
        elif not torch.isfinite(p.grad).all():
            bad.append(name)
        elif not p.grad.abs().sum() > 0:
            zero.append(name)
    assert not missing, f"no gradient: {missing}"
    assert not bad, f"non-finite gradient: {bad}"
    assert not zero, f"zero gradient: {zero}"
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3).step()


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_trains_one_step(variant):
    model = build_tiny(seed=1, variant=variant)
    _train_step(model)
    assert not any(p.grad is not None for p in model.encoder.parameters())  # frozen by default


def test_trainable_encoder_gets_gradients():
    cfg = Mem4DConfig.tiny()
    torch.manual_seed(2)
    from mem4d.model.mem4d import Mem4D

    model = Mem4D(dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, trainable=True)))
    _train_step(model)
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_fused_psm_tokens_option_trains():
    cfg = Mem4DConfig.tiny()
    model = build_tiny(seed=3, psm=dataclasses.replace(cfg.psm, fuse_tokens=True))
    assert model.psm.encoder.fuse is not None
    _train_step(model)


def test_truncated_backprop_detaches_the_state():
    model = build_tiny(seed=4).train()
    clip = make_clip(4, H=H, W=W)
    seq, state = model.stream(clip, detach_every=2)
    assert not any(t.requires_grad for t in state.tensors().values())
    _simple_loss(seq).backward()
    _, state = model.stream(clip)
    assert any(t.requires_grad for t in state.tensors().values())


def test_gradient_checkpointing_gives_the_same_gradients():
    clip = make_clip(3, H=H, W=W, seed=12)
    grads = []
    for enabled in (False, True):
        model = build_tiny(seed=7).train()
        model.set_gradient_checkpointing(enabled)
        _simple_loss(model(clip)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-5, rtol=1e-4, msg=name)
