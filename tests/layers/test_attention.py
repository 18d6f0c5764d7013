"""Attention / Block: memory tokens act only as extra keys and values."""

import pytest
import torch

from mem4d.layers import Attention, Block, RotaryEmbedding


def _inputs(b=2, n=6, m=5, c=64, axes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, c, generator=g)
    mem = torch.randn(b, m, c, generator=g)
    pos = torch.randn(b, n, axes, generator=g) * 3
    mem_pos = torch.randn(b, m, axes, generator=g) * 3
    return x, pos, mem, mem_pos


def _randomize(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            offset = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + offset)


@pytest.mark.parametrize("use_rope", [False, True])
def test_attention_mem_equals_concat_self_attention(use_rope):
    rope = RotaryEmbedding(16, 3) if use_rope else None
    attn = Attention(64, 4, rope=rope)
    _randomize(attn)
    x, pos, mem, mem_pos = _inputs()
    out = attn(x, pos, mem, mem_pos)
    full = attn(torch.cat([x, mem], 1), torch.cat([pos, mem_pos], 1))
    assert out.shape == x.shape
    torch.testing.assert_close(out, full[:, : x.shape[1]], atol=1e-5, rtol=1e-5)


def test_attention_plain_self_attention():
    attn = Attention(64, 4)
    _randomize(attn)
    x, *_ = _inputs()
    out = attn(x)
    # explicit reference: qkv rows [q|k|v], per-head split, scale head_dim^-0.5
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = (t.reshape(2, 6, 4, 16).transpose(1, 2) for t in qkv.split(64, -1))
    w = torch.softmax(q @ k.transpose(-1, -2) * 16**-0.5, -1)
    ref = (w @ v).transpose(1, 2).reshape(2, 6, 64) @ attn.proj.weight.T + attn.proj.bias
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # empty memory is self-attention
    torch.testing.assert_close(attn(x, mem=x[:, :0]), out, atol=1e-6, rtol=0)


def test_attention_errors():
    attn = Attention(64, 4, rope=RotaryEmbedding(16, 2))
    x = torch.randn(1, 3, 64)
    with pytest.raises(ValueError, match="pos"):
        attn(x)
    with pytest.raises(ValueError, match="mem_pos"):
        attn(x, torch.zeros(1, 3, 2), mem=torch.randn(1, 2, 64))
    with pytest.raises(ValueError, match="mem"):
        attn(x, torch.zeros(1, 3, 2), mem=torch.randn(1, 2, 32), mem_pos=torch.zeros(1, 2, 2))
    with pytest.raises(ValueError):
        Attention(64, 4, rope=RotaryEmbedding(32, 2))


def test_block_mem_shared_norm_equals_concat():
    blk = Block(64, 4, rope=RotaryEmbedding(16, 3), use_mem_norm=False)
    _randomize(blk)
    x, pos, mem, mem_pos = _inputs(seed=3)
    out = blk(x, pos, mem, mem_pos)
    # shared norm: the x rows of a full block over concat(x, mem) (MLP is per token)
    full = blk(torch.cat([x, mem], 1), torch.cat([pos, mem_pos], 1))
    torch.testing.assert_close(out, full[:, :6], atol=1e-5, rtol=1e-5)


def test_block_keys_and_mem_norm():
    keys = set(Block(64, 4).state_dict())
    assert {"norm_mem.weight", "norm_mem.bias"} <= keys
    enc_keys = set(Block(64, 4, use_mem_norm=False).state_dict())
    assert enc_keys == {
        f"{m}.{p}"
        for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
        for p in ("weight", "bias")
    }
    blk = Block(64, 4, mlp_ratio=4.0)
    assert blk.mlp.fc1.weight.shape == (256, 64) and blk.norm1.eps == 1e-6
    # norm_mem is used for memory: changing it changes the output
    x, pos, mem, mem_pos = _inputs(seed=4)
    a = blk(x, mem=mem)
    with torch.no_grad():
        blk.norm_mem.weight.mul_(2.0)
    assert not torch.allclose(a, blk(x, mem=mem))


def test_block_gradient_checkpointing():
    blk = Block(64, 4, rope=RotaryEmbedding(16, 3))
    x, pos, mem, mem_pos = _inputs(seed=5)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    blk(x1, pos, mem, mem_pos).square().sum().backward()
    g_ref = [p.grad.clone() for p in blk.parameters()]
    blk.zero_grad()
    out = torch.utils.checkpoint.checkpoint(blk, x2, pos, mem, mem_pos, use_reentrant=False)
    out.square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad)
    for p, g in zip(blk.parameters(), g_ref):
        torch.testing.assert_close(p.grad, g)


def test_block_bf16_autocast():
    blk = Block(64, 4, rope=RotaryEmbedding(16, 3))
    x, pos, mem, mem_pos = _inputs(seed=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = blk(x, pos, mem, mem_pos)
    torch.testing.assert_close(out.float(), blk(x, pos, mem, mem_pos), atol=0.1, rtol=0.05)
    out16 = blk.to(torch.bfloat16)(x.bfloat16(), pos, mem.bfloat16(), mem_pos)
    assert out16.dtype == torch.bfloat16 and torch.isfinite(out16).all()


def test_mlp_exact_gelu():
    from mem4d.layers import Mlp

    mlp = Mlp(8, 32, 4)
    x = torch.randn(3, 8)
    ref = mlp.fc2(0.5 * mlp.fc1(x) * (1 + torch.erf(mlp.fc1(x) / 2**0.5)))
    torch.testing.assert_close(mlp(x), ref)
    assert mlp(x).shape == (3, 4) and Mlp(8, 32)(x).shape == (3, 8)
