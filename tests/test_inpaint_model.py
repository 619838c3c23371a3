"""Completion networks, PatchGAN, masks, and loading a trained completion network."""

import pytest
import torch

import ganforge
from ganforge.errors import RunError
from ganforge.nn.layers import ModelBuildError
from ganforge.tasks import resolve
from ganforge.tasks.inpaint.masks import box_mask, center_box_mask, random_masks
from ganforge.tasks.inpaint.networks import (
    INPAINT_MODELS,
    GatedUNet,
    InpaintSizeError,
    PartialConv2d,
    PartialUNet,
    PatchDiscriminator,
    build_inpainter,
    plan_levels,
)
from ganforge.tasks.inpaint.task import load_inpainter
from ganforge.tasks.inpaint.trainer import InpaintTrainer

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 48, 64)]
TINY_INPAINT = [
    "task=inpaint",
    "data.limit=256",
    "inpaint.width=8",
    "inpaint.d_width=8",
    "train.batch_size=16",
    "train.progress=false",
    "train.log_every=2",
    "train.sample_every=4",
    "train.checkpoint_every=4",
    "train.sample_count=16",
    "train.tensorboard=false",
]


def _batch(shape, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g) * 2 - 1
    m = random_masks(n, shape[1], shape[2], "mixed", 0.1, 0.5, generator=g)
    return x, m


# ------------------------------------------------------------------------------------------
# networks


@pytest.mark.parametrize("arch", INPAINT_MODELS.names())
@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_range_backward(arch, shape):
    torch.manual_seed(0)
    g = INPAINT_MODELS.get(arch)(shape, 8)
    d = PatchDiscriminator(shape, 8)
    x, m = _batch(shape)
    out = g(x * (1 - m), m)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    logits = d(out, m)
    assert logits.dim() == 4 and logits.shape[:2] == (3, 1) and logits.shape[2] > 1 and logits.shape[3] > 1
    (logits.mean() + out.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in g.parameters())
    assert all(p.grad is not None for p in d.parameters())


def test_depth_adapts_to_the_size():
    assert plan_levels(28, 28) == 2
    assert plan_levels(32, 32) == 3
    assert plan_levels(64, 64) == 4
    assert plan_levels(48, 64) == 3
    assert plan_levels(256, 256) == 4
    assert GatedUNet((1, 28, 28), 8).levels == 2 and PartialUNet((3, 64, 64), 8).levels == 4
    d = PatchDiscriminator((3, 64, 64), 8)
    assert d(torch.zeros(1, 3, 64, 64), torch.zeros(1, 1, 64, 64)).shape == (1, 1, 8, 8)


@pytest.mark.parametrize("size", [(30, 30), (28, 30), (4, 4)])
def test_unbuildable_size_names_a_buildable_one(size):
    for cls in (GatedUNet, PartialUNet):
        with pytest.raises(InpaintSizeError, match=r"multiples of 4 .* set data.size=\d+x\d+") as e:
            cls((1, *size), 8)
        assert isinstance(e.value, ModelBuildError) and isinstance(e.value, ValueError)


def test_wrong_input_shapes_are_clear():
    g = GatedUNet((1, 28, 28), 8)
    with pytest.raises(ValueError, match=r"expected images \[N, 1, H, W\]"):
        g(torch.zeros(2, 3, 28, 28), torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="expected a mask"):
        g(torch.zeros(2, 1, 28, 28), torch.zeros(2, 28, 28))
    with pytest.raises(InpaintSizeError, match="multiples of 4"):
        g(torch.zeros(1, 1, 30, 30), torch.zeros(1, 1, 30, 30))


@pytest.mark.parametrize("arch", INPAINT_MODELS.names())
def test_complete_keeps_known_pixels_and_ignores_the_hole(arch):
    torch.manual_seed(0)
    g = INPAINT_MODELS.get(arch)((3, 32, 32), 8).eval()
    x, m = _batch((3, 32, 32), n=4)
    with torch.no_grad():
        c = g.complete(x, m)
        known = (m < 0.5).expand_as(x)
        assert torch.equal(c[known], x[known])
        assert not torch.equal(c[~known], x[~known])
        noisy = torch.where(known, x, torch.randn_like(x) * 5)  # whatever is in the hole is not seen
        assert torch.equal(g.complete(noisy, m), c)
        assert torch.equal(g.complete(x, m.bool()), c)  # bool masks work too


def test_partial_conv_renormalises_and_updates_the_mask():
    pc = PartialConv2d(2, 4, 3)
    x = torch.randn(1, 2, 8, 8)
    valid = torch.zeros(1, 1, 8, 8)
    valid[..., :4] = 1  # left half known
    out, new = pc(x, valid)
    assert new.shape == (1, 1, 8, 8)
    assert new[..., :5].eq(1).all() and new[..., 5:].eq(0).all()  # one pixel of growth
    assert out[..., 5:].eq(0).all()  # nothing valid in the window: zero, bias included
    # fully valid input: an ordinary convolution
    full, m1 = pc(x, torch.ones(1, 1, 8, 8))
    ref = torch.nn.functional.conv2d(x, pc.conv.weight, pc.bias, padding=1)
    assert m1.eq(1).all()
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    assert torch.allclose(full[inner], ref[inner], atol=1e-6)
    # the unknown half does not influence the output at all
    out2, _ = pc(torch.where(valid.bool(), x, torch.randn_like(x)), valid)
    assert torch.equal(out, out2)


def test_gated_conv_gate_scales_features():
    g = GatedUNet((1, 28, 28), 8)
    conv = g.stem
    x = torch.randn(2, 2, 28, 28)
    f, gate = conv.conv(x).split(conv.cout, 1)
    feat = torch.nn.functional.leaky_relu(f, 0.2)
    feat = feat / feat.pow(2).mean(1, keepdim=True).add(1e-8).sqrt()  # unit RMS per pixel
    assert torch.allclose(conv(x), feat * torch.sigmoid(gate), atol=1e-5)


def test_discriminator_is_spectrally_normalised():
    d = PatchDiscriminator((1, 28, 28), 8)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(c, "parametrizations") for c in convs)


def test_build_inpainter():
    g, d = build_inpainter("partial", (3, 48, 64), width=8, d_width=4)
    assert isinstance(g, PartialUNet) and g.width == 8 and g.levels == 3
    assert isinstance(d, PatchDiscriminator)
    with pytest.raises(ModelBuildError, match="multiples of 4"):
        build_inpainter("partial", (3, 50, 64))
    with pytest.raises(ModelBuildError, match="inpaint.arch"):
        build_inpainter("nope", (3, 48, 64))


# ------------------------------------------------------------------------------------------
# masks


@pytest.mark.parametrize("kind", ["box", "free", "mixed"])
@pytest.mark.parametrize("hw", [(28, 28), (64, 64), (48, 64)])
def test_random_masks_shape_values_fraction(kind, hw):
    h, w = hw
    m = random_masks(64, h, w, kind, 0.1, 0.5, generator=torch.Generator().manual_seed(1))
    assert m.shape == (64, 1, h, w) and m.dtype == torch.float32
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    frac = m.flatten(1).mean(1)
    tol = 0.02 if kind == "box" else 0.08  # boxes: rounding of the sides; strokes: the last dilation
    assert frac.min() >= 0.1 - tol and frac.max() <= 0.5 + tol, (frac.min(), frac.max())
    assert 0.2 < frac.mean() < 0.4  # spread over the range, not stuck at one end
    assert frac.std() > 0.05


def test_free_form_masks_are_strokes_not_boxes():
    m = random_masks(32, 64, 64, "free", 0.2, 0.4, generator=torch.Generator().manual_seed(0))[:, 0]
    rows, cols = m.any(2), m.any(1)
    bbox = rows.sum(1).float() * cols.sum(1).float()  # bounding box area
    assert (m.flatten(1).sum(1) < 0.9 * bbox).float().mean() > 0.9  # strokes leave most of their bounding box


def test_masks_are_reproducible_from_the_generator():
    for kind in ("box", "free", "mixed"):
        a = random_masks(16, 32, 32, kind, generator=torch.Generator().manual_seed(3))
        b = random_masks(16, 32, 32, kind, generator=torch.Generator().manual_seed(3))
        c = random_masks(16, 32, 32, kind, generator=torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(0)
    first = random_masks(8, 28, 28, "mixed", generator=g)
    state = g.get_state()
    second = random_masks(8, 28, 28, "mixed", generator=g)
    g.set_state(state)
    assert torch.equal(random_masks(8, 28, 28, "mixed", generator=g), second)
    assert not torch.equal(first, second)


def test_mixed_masks_mix_both_kinds():
    m = random_masks(64, 32, 32, "mixed", 0.2, 0.3, generator=torch.Generator().manual_seed(0))[:, 0]
    rows, cols = m.any(2).sum(1), m.any(1).sum(1)
    is_box = m.flatten(1).sum(1) == rows * cols
    assert 10 < int(is_box.sum()) < 54


def test_random_masks_errors_and_device():
    with pytest.raises(ValueError, match="kind 'circle' is not allowed; choose one of: box, free, mixed"):
        random_masks(2, 8, 8, "circle")
    with pytest.raises(ValueError, match="hole_min <= hole_max"):
        random_masks(2, 8, 8, "box", 0.5, 0.2)
    assert random_masks(0, 8, 8, "mixed").shape == (0, 1, 8, 8)
    assert random_masks(2, 8, 8, "free", device="cpu").device.type == "cpu"


def test_fixed_boxes():
    m = center_box_mask(28, 28, 14, 14)
    assert m.shape == (1, 1, 28, 28) and m.sum() == 196
    assert m[0, 0, 7:21, 7:21].eq(1).all()
    b = box_mask(10, 12, x=8, y=-2, bw=10, bh=5)  # clipped to the image
    assert b.shape == (1, 1, 10, 12) and b[0, 0, :3, 8:].eq(1).all() and b.sum() == 12
    with pytest.raises(ValueError, match="does not fit"):
        center_box_mask(28, 28, 30, 10)


# ------------------------------------------------------------------------------------------
# loading a trained network


@pytest.fixture(scope="module")
def inpaint_run(tmp_path_factory):
    cfg = resolve(None, TINY_INPAINT + ["train.steps=4"])
    return InpaintTrainer(cfg, runs_dir=tmp_path_factory.mktemp("runs"), log=lambda m: None).run()


def test_load_inpainter_round_trip(inpaint_run):
    h = load_inpainter(inpaint_run)
    assert h.img_shape == (1, 28, 28) and h.step == 4 and h.config.task == "inpaint" and h.ema
    assert not h.module.training and isinstance(h.module, GatedUNet)
    assert h.checkpoint_path.name == "step-00000004" and h.run_dir == inpaint_run
    from ganforge.data import load_dataset

    images = load_dataset(resolve(None, ["data.limit=8"]).data).images  # uint8 [8, 1, 28, 28]
    mask = center_box_mask(28, 28, 14, 14)
    out = h.complete(images, mask)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    known = (mask < 0.5).expand_as(images)
    assert torch.equal(out[known], images[known])  # bit for bit
    assert torch.equal(h.complete(images, mask.expand(8, 1, 28, 28).bool()), out)
    assert torch.equal(h.complete(images[:3], mask, batch_size=2), out[:3])  # batching changes nothing
    # the same numbers as the module's own composite
    x = images.float() / 127.5 - 1
    ref = (
        ((h.module.complete(x, mask.expand(8, 1, 28, 28)).clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)
    )
    assert torch.equal(out, ref)
    # a larger image whose sides are multiples of 4 works with the same network
    assert h.complete(torch.zeros(1, 1, 32, 36, dtype=torch.uint8), torch.ones(1, 1, 32, 36)).shape == (1, 1, 32, 36)
    with pytest.raises(ValueError, match="uint8 images"):
        h.complete(images.float(), mask)
    with pytest.raises(ValueError, match="expected a mask"):
        h.complete(images, mask[0])
    with pytest.raises(InpaintSizeError, match="multiples of 4"):
        h.complete(torch.zeros(1, 1, 30, 30, dtype=torch.uint8), torch.zeros(1, 1, 30, 30))


def test_load_inpainter_checkpoint_choice(inpaint_run):
    h = load_inpainter(inpaint_run, checkpoint="4")
    assert h.step == 4
    with pytest.raises(RunError, match="no checkpoint at step 3"):
        load_inpainter(inpaint_run, checkpoint="3")


def test_load_inpainter_refuses_a_gan_run(tmp_path, tiny_overrides):
    run = ganforge.train(overrides=tiny_overrides + ["train.steps=1"], runs_dir=tmp_path)
    with pytest.raises(RunError, match=r"trained a GAN \(task=gan\), not a completion network; use --method latent"):
        load_inpainter(run)
    with pytest.raises(RunError, match="is not a ganforge run folder"):
        load_inpainter(tmp_path)
    with pytest.raises(RunError, match="does not exist"):
        load_inpainter(tmp_path / "nope")
