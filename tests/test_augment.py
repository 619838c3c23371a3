"""DiffAugment (Zhao et al. 2020): shapes, identity, reproducibility, gradients, and each op's effect."""

import pytest
import torch
import torch.nn.functional as F

from ganforge.tasks.gan.augment import diff_augment

POLICIES = ["color", "translation", "cutout", "color,translation,cutout"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n=8, c=3, h=32, w=32, seed=0):
    return torch.rand(n, c, h, w, generator=gen(seed)) * 2 - 1


# ---- reference: the paper's DiffAugment_pytorch.py, with the generator threaded through ----


def ref_color(x, g):
    x = x + (torch.rand(x.size(0), 1, 1, 1, generator=g) - 0.5)
    m = x.mean(dim=1, keepdim=True)
    x = (x - m) * (torch.rand(x.size(0), 1, 1, 1, generator=g) * 2) + m
    m = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - m) * (torch.rand(x.size(0), 1, 1, 1, generator=g) + 0.5) + m


def ref_translation(x, g, ratio=0.125):
    sx, sy = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    tx = torch.randint(-sx, sx + 1, size=[x.size(0), 1, 1], generator=g)
    ty = torch.randint(-sy, sy + 1, size=[x.size(0), 1, 1], generator=g)
    gb, gx, gy = torch.meshgrid(
        torch.arange(x.size(0)), torch.arange(x.size(2)), torch.arange(x.size(3)), indexing="ij"
    )
    gx = torch.clamp(gx + tx + 1, 0, x.size(2) + 1)
    gy = torch.clamp(gy + ty + 1, 0, x.size(3) + 1)
    x_pad = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return x_pad.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def ref_cutout(x, g, ratio=0.5):
    cs = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    ox = torch.randint(0, x.size(2) + (1 - cs[0] % 2), size=[x.size(0), 1, 1], generator=g)
    oy = torch.randint(0, x.size(3) + (1 - cs[1] % 2), size=[x.size(0), 1, 1], generator=g)
    gb, gx, gy = torch.meshgrid(torch.arange(x.size(0)), torch.arange(cs[0]), torch.arange(cs[1]), indexing="ij")
    gx = torch.clamp(gx + ox - cs[0] // 2, min=0, max=x.size(2) - 1)
    gy = torch.clamp(gy + oy - cs[1] // 2, min=0, max=x.size(3) - 1)
    mask = torch.ones(x.size(0), x.size(2), x.size(3), dtype=x.dtype)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


# ---- tests ----


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (4, 3, 32, 32), (2, 3, 48, 64)])
def test_shapes(policy, shape):
    x = torch.rand(*shape) * 2 - 1
    out = diff_augment(x, policy, generator=gen())
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()


@pytest.mark.parametrize("policy", ["", " ", " , "])
def test_empty_policy_is_identity(policy):
    x = images()
    assert diff_augment(x, policy, generator=gen()) is x


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="'flip' is not known.*color, translation, cutout"):
        diff_augment(images(), "color,flip")


@pytest.mark.parametrize("policy", POLICIES)
def test_reproducible_with_the_same_generator_seed(policy):
    x = images()
    a = diff_augment(x, policy, generator=gen(7))
    b = diff_augment(x, policy, generator=gen(7))
    c = diff_augment(x, policy, generator=gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    torch.manual_seed(3)  # no generator: the global RNG
    d = diff_augment(x, policy)
    torch.manual_seed(3)
    assert torch.equal(d, diff_augment(x, policy))


@pytest.mark.parametrize("policy", POLICIES)
def test_gradient_flows_to_the_images(policy):
    x = images().requires_grad_(True)
    w = torch.randn_like(x)
    (diff_augment(x, policy, generator=gen()) * w).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("shape", [(16, 3, 32, 32), (8, 1, 28, 28), (8, 3, 48, 64)])
def test_matches_the_papers_reference_code(shape):
    x = torch.rand(*shape) * 2 - 1
    assert torch.allclose(diff_augment(x, "translation", generator=gen(1)), ref_translation(x, gen(1)))
    assert torch.allclose(diff_augment(x, "cutout", generator=gen(2)), ref_cutout(x, gen(2)))
    assert torch.allclose(diff_augment(x, "translation", 0.25, generator=gen(1)), ref_translation(x, gen(1), 0.25))
    assert torch.allclose(diff_augment(x, "cutout", cutout=0.3, generator=gen(2)), ref_cutout(x, gen(2), 0.3))
    if shape[1] == 3:
        assert torch.allclose(diff_augment(x, "color", generator=gen(3)), ref_color(x, gen(3)), atol=1e-6)


def test_translation_moves_a_bright_pixel_by_at_most_the_max_shift():
    n, h, w, s = 64, 32, 32, 4  # 0.125 * 32 = 4 pixels
    x = torch.zeros(n, 1, h, w)
    x[:, 0, 16, 20] = 1.0
    out = diff_augment(x, "translation", generator=gen())
    assert torch.equal(out.flatten(1).sum(1), torch.ones(n))  # nothing falls off from the middle
    pos = out.flatten(1).argmax(1)
    dy, dx = pos // w - 16, pos % w - 20
    assert dy.abs().max() <= s and dx.abs().max() <= s
    assert len(set(dy.tolist())) > 1 and len(set(dx.tolist())) > 1  # it really moves, both ways
    assert dy.min() < 0 < dy.max() and dx.min() < 0 < dx.max()
    # a pixel on the edge either moves inside or falls off: the sum never grows
    x = torch.zeros(n, 1, h, w)
    x[:, 0, 0, w - 1] = 1.0
    sums = diff_augment(x, "translation", generator=gen()).flatten(1).sum(1)
    assert set(sums.tolist()) == {0.0, 1.0}


def test_translation_is_a_zero_filled_shift_of_the_whole_image():
    x = torch.rand(6, 3, 16, 24) + 0.5  # strictly positive, so zero fill is visible
    out = diff_augment(x, "translation", translation=0.25, generator=gen(5))
    for i in range(6):
        found = False
        for dy in range(-4, 5):
            for dx in range(-6, 7):
                shifted = torch.zeros_like(x[i])  # shifted[y, x] = x[y + dy, x + dx] where inside
                ys, xs = slice(max(0, -dy), 16 - max(0, dy)), slice(max(0, -dx), 24 - max(0, dx))
                yt, xt = slice(max(0, dy), 16 + min(0, dy)), slice(max(0, dx), 24 + min(0, dx))
                shifted[:, ys, xs] = x[i][:, yt, xt]
                found = found or torch.equal(out[i], shifted)
        assert found, f"sample {i} is not a shifted copy"


def test_cutout_zeroes_one_square_of_the_right_size():
    n, h, w = 64, 32, 32
    side = 16  # 0.5 * 32
    x = torch.rand(n, 3, h, w) + 0.5
    out = diff_augment(x, "cutout", generator=gen())
    zero = out == 0  # [N, C, H, W]
    assert (zero == zero[:, :1]).all()  # the same square in every channel
    kept = ~zero
    assert torch.equal(out[kept], x[kept])  # the rest is untouched
    full = 0
    for i in range(n):
        rows = zero[i, 0].any(1).nonzero().flatten()
        cols = zero[i, 0].any(0).nonzero().flatten()
        hh, ww = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert zero[i, 0].sum() == hh * ww  # one solid axis-aligned rectangle
        assert hh <= side and ww <= side  # a square of the given side, clipped by the border ...
        touches = rows.min() == 0 or rows.max() == h - 1 or cols.min() == 0 or cols.max() == w - 1
        if not touches:
            assert hh == side and ww == side  # ... and whole when it lies inside
            full += 1
    assert full > 0
    out = diff_augment(torch.ones(4, 1, 20, 20), "cutout", cutout=0.3, generator=gen())
    assert (out == 0).flatten(1).sum(1).max() == 36  # side round(0.3 * 20) = 6


def test_color_changes_values():
    x = images()
    out = diff_augment(x, "color", generator=gen())
    assert (out - x).abs().flatten(1).amax(1).min() > 1e-3  # every image changes
    # grey images: brightness and contrast only (saturation has nothing to act on)
    x1 = images(c=1)
    g = gen(4)
    b = torch.rand(8, 1, 1, 1, generator=g) - 0.5
    c = torch.rand(8, 1, 1, 1, generator=g) + 0.5
    y = x1 + b
    m = y.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(diff_augment(x1, "color", generator=gen(4)), (y - m) * c + m, atol=1e-6)
