import pytest
import torch

from mem4d.data.sample import Sample


def _sample(T=3, H=4, W=5):
    cam2world = torch.eye(4).repeat(T, 1, 1)
    cam2world[1:, 0, 3] = torch.arange(1, T).float()
    K = torch.tensor([[10.0, 0, 2], [0, 10.0, 1.5], [0, 0, 1]]).repeat(T, 1, 1)
    return Sample(
        images=torch.rand(T, 3, H, W),
        depth=torch.rand(T, H, W) + 1,
        valid=torch.ones(T, H, W, dtype=torch.bool),
        intrinsics=K,
        cam2world=cam2world,
        name="unit",
    )


def test_validate_accepts_a_good_sample():
    assert _sample().validate().num_frames == 3


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda s: s.depth.__setitem__((0, 0, 0), float("nan")), "non-finite"),
        (lambda s: s.cam2world.__setitem__((0, 0, 3), 1.0), "identity"),
        (lambda s: s.intrinsics.__setitem__((1, 0, 0), -1.0), "focal"),
        (lambda s: s.cam2world.__setitem__((2, 0, 0), 2.0), "orthonormal"),
        (lambda s: s.images.__setitem__((0, 0, 0, 0), 1.5), "[0, 1]"),
    ],
)
def test_validate_names_the_broken_invariant(break_it, message):
    s = _sample()
    break_it(s)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        s.validate()


def test_reanchor_puts_frame_zero_at_identity_and_keeps_relative_poses():
    s = _sample()
    R = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    offset = torch.eye(4)
    offset[:3, :3] = R
    offset[:3, 3] = torch.tensor([1.0, 2.0, 3.0])
    moved = Sample(**{**s.__dict__, "cam2world": offset @ s.cam2world})
    back = moved.reanchor()
    torch.testing.assert_close(back.cam2world, s.cam2world, atol=1e-6, rtol=0)
    back.validate()


def test_slice_keeps_every_tensor_consistent():
    s = _sample(T=5)
    sub = s.slice(slice(1, 4))
    assert sub.num_frames == 3 and sub.depth.shape[0] == 3 and sub.cam2world.shape[0] == 3
