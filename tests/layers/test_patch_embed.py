import pytest
import torch
import torch.nn.functional as F

from mem4d.layers import PatchEmbed


def test_patch_embed_row_major():
    pe = PatchEmbed(16, 3, dim=8)
    x = torch.randn(2, 3, 32, 48)
    tok = pe(x)
    assert tok.shape == (2, 6, 8)
    # token n = row*w + col: token 4 is row 1, col 1
    patch = x[:, :, 16:32, 16:32]
    ref = F.conv2d(patch, pe.proj.weight, pe.proj.bias).flatten(1)
    torch.testing.assert_close(tok[:, 4], ref)
    assert pe.grid_size(32, 48) == (2, 3)


@pytest.mark.parametrize("hw", [(30, 48), (32, 50)])
def test_patch_embed_rejects_non_multiple(hw):
    pe = PatchEmbed(16, 3, dim=8)
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        pe(torch.randn(1, 3, *hw))
