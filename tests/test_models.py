"""Every registered model, at several image sizes: shapes, range, backward, save/load round trip."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from ganforge.config import ConfigError
from ganforge.nn.layers import ConditionalBatchNorm, MinibatchStd, ModelBuildError, ProjectionHead
from ganforge.tasks import resolve
from ganforge.tasks.gan.config import ModelConfig
from ganforge.tasks.gan.dcgan import ModelSizeError, plan_stages
from ganforge.tasks.gan.networks import MODELS, build_models

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 48, 64), (1, 64, 64)]


def tiny(arch, **kw):
    return ModelConfig(arch=arch, z_dim=8, g_width=8, d_width=8, **kw)


@pytest.mark.parametrize("arch", MODELS.names())
@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_range_backward(arch, shape):
    torch.manual_seed(0)
    g, d = build_models(tiny(arch), shape)
    z = torch.randn(3, 8)
    x = g(z)
    assert x.shape == (3, *shape)
    assert x.min() >= -1 and x.max() <= 1
    logits = d(x)
    assert logits.shape == (3,)
    logits.sum().backward()
    assert all(p.grad is not None for p in g.parameters())
    assert all(p.grad is not None for p in d.parameters())


@pytest.mark.parametrize("arch", MODELS.names())
@pytest.mark.parametrize("d_norm", ["batch", "none", "spectral"])
def test_save_load_round_trip(arch, d_norm, tmp_path):
    torch.manual_seed(0)
    shape = (1, 28, 28)
    g, d = build_models(tiny(arch, d_norm=d_norm), shape)
    d(g(torch.randn(4, 8)))  # populate BN stats / spectral-norm vectors
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, tmp_path / "g.safetensors")
    save_file({k: v.contiguous() for k, v in d.state_dict().items()}, tmp_path / "d.safetensors")
    g2, d2 = build_models(tiny(arch, d_norm=d_norm), shape)
    g2.load_state_dict(load_file(tmp_path / "g.safetensors"))
    d2.load_state_dict(load_file(tmp_path / "d.safetensors"))
    g.eval(), g2.eval(), d.eval(), d2.eval()
    z = torch.randn(2, 8)
    assert torch.equal(g(z), g2(z))
    assert torch.equal(d(g(z)), d2(g(z)))


def test_spectral_norm_is_applied():
    _, d = build_models(tiny("dcgan", d_norm="spectral"), (1, 28, 28))
    assert any(hasattr(m, "parametrizations") for m in d.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())


def test_dcgan_stage_plan():
    assert plan_stages(28, 28) == (2, 7, 7)
    assert plan_stages(32, 32) == (3, 4, 4)
    assert plan_stages(48, 64) == (4, 3, 4)
    with pytest.raises(ModelSizeError, match=r"dcgan cannot be built for 30x30.*data\.size"):
        plan_stages(30, 30)


def test_dcgan_pad_runs_at_the_padded_size_behind_an_unchanged_interface():
    torch.manual_seed(0)
    g, d = build_models(tiny("dcgan", pad=2), (1, 28, 28))
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules()) == 3  # 4 -> 8 -> 16 -> 32, cropped to 28
    assert sum(isinstance(m, torch.nn.Conv2d) for m in d.modules()) == 3
    x = g(torch.randn(3, 8))
    assert x.shape == (3, 1, 28, 28)
    logits = d(x)
    assert logits.shape == (3,)
    logits.sum().backward()
    assert all(p.grad is not None for p in g.parameters())
    # D sees its input framed in black: a real image and the same image already framed agree
    real = torch.rand(2, 1, 28, 28) * 2 - 1
    d.eval()
    framed = torch.nn.functional.pad(real, (2, 2, 2, 2), value=-1.0)
    assert torch.allclose(d.features(framed).flatten(1), d._features(real))
    # G's output is the centre of its 32x32 canvas
    g.eval()
    z = torch.randn(2, 8)
    canvas = g.blocks(g.project_act(g.project(z).view(2, g.c0, g.bh, g.bw)))
    assert canvas.shape[-2:] == (32, 32) and torch.equal(g(z), canvas[:, :, 2:-2, 2:-2])


def test_pad_needs_dcgan():
    with pytest.raises(ConfigError, match=r"model\.pad: only the dcgan architecture can pad, got model.arch=mlp"):
        resolve(None, ["model.arch=mlp", "model.pad=2"])
    with pytest.raises(ConfigError, match=r"model\.pad"):
        resolve(None, ["model.pad=-1"])


def test_unbuildable_size_is_a_config_error():
    from ganforge.tasks.gan.trainer import GanTrainer as Trainer

    class Data:
        images = torch.zeros(8, 1, 30, 30, dtype=torch.uint8)
        labels, class_names, name, source, skipped = None, [], "x", "x", []

    cfg = resolve(None, ["train.steps=1", "train.batch_size=4"])
    with pytest.raises(ConfigError, match=r"model\.arch=dcgan: dcgan cannot be built for 30x30"):
        Trainer(cfg, data=Data(), dry_run=True)


# ------------------------------------------------------------------------------------------
# class-conditional models, minibatch std, the resnet family

K = 5
# (g_cond, d_cond, mbstd): every option is exercised in at least one combination
COND_VARIANTS = [
    ("cbn", "projection", False),
    ("embed", "acgan", True),
    ("embed", "projection", True),
    ("cbn", "acgan", False),
]


def tiny_cond(arch, g_cond="cbn", d_cond="projection", mbstd=False, **kw):
    return tiny(arch, conditional=True, num_classes=K, g_cond=g_cond, d_cond=d_cond, mbstd=mbstd, **kw)


def d_out(d, x, y):
    """Everything D computes, as one tensor to sum for backward."""
    if d.aux:
        logits, cls = d.forward_aux(x)
        return logits.sum() + cls.sum()
    return d(x, y).sum()


@pytest.mark.parametrize("arch", MODELS.names())
@pytest.mark.parametrize("g_cond,d_cond,mbstd", COND_VARIANTS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_conditional_shapes_backward(arch, g_cond, d_cond, mbstd, shape):
    torch.manual_seed(0)
    g, d = build_models(tiny_cond(arch, g_cond, d_cond, mbstd), shape)
    assert g.num_classes == K and d.num_classes == K and d.aux == (d_cond == "acgan")
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 4])
    x = g(z, y)
    assert x.shape == (4, *shape)
    assert x.min() >= -1 and x.max() <= 1
    logits = d(x, y)
    assert logits.shape == (4,)
    if d.aux:
        lg, cls = d.forward_aux(x)
        assert lg.shape == (4,) and cls.shape == (4, K)
        assert torch.equal(d(x), lg) and torch.equal(d(x, y), lg)  # labels are ignored by the acgan logit
    d_out(d, x, y).backward()
    assert all(p.grad is not None for p in g.parameters())
    assert all(p.grad is not None for p in d.parameters())


@pytest.mark.parametrize("arch", MODELS.names())
def test_unconditional_models_say_so(arch):
    g, d = build_models(tiny(arch), (1, 28, 28))
    assert g.num_classes == 0 and d.num_classes == 0 and d.aux is False
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="unconditional.*given class labels"):
        g(torch.randn(2, 8), y)
    with pytest.raises(ValueError, match="unconditional.*given class labels"):
        d(torch.zeros(2, 1, 28, 28), y)
    with pytest.raises(ValueError, match="forward_aux needs an AC-GAN"):
        d.forward_aux(torch.zeros(2, 1, 28, 28))
    # conditional=false means unconditional whatever num_classes says
    g, d = build_models(tiny(arch, num_classes=K), (1, 28, 28))
    assert g.num_classes == 0 and d.num_classes == 0


@pytest.mark.parametrize("arch", MODELS.names())
def test_conditional_models_need_valid_labels(arch):
    g, d = build_models(tiny_cond(arch), (1, 28, 28))
    z, x = torch.randn(2, 8), torch.zeros(2, 1, 28, 28)
    with pytest.raises(ValueError, match=r"class-conditional \(5 classes\) and needs labels"):
        g(z)
    with pytest.raises(ValueError, match="needs labels"):
        d(x)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        g(z, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="integer tensor"):
        g(z, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="3 labels for a batch of 2"):
        d(x, torch.tensor([0, 1, 2]))


def _spread_cbn(g):
    """Conditional BN starts as plain BN (gain 1, bias 0 for every class); give each class its own."""
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, ConditionalBatchNorm):
                m.gamma.weight.normal_(1.0, 0.3)
                m.beta.weight.normal_(0.0, 0.3)


@pytest.mark.parametrize("arch", MODELS.names())
@pytest.mark.parametrize("g_cond", ["cbn", "embed"])
def test_labels_change_the_generator_output(arch, g_cond):
    torch.manual_seed(0)
    g, _ = build_models(tiny_cond(arch, g_cond), (3, 32, 32))
    _spread_cbn(g)
    z = torch.randn(1, 8).repeat(K, 1)  # the same z for every class (train mode: BN uses batch statistics)
    x = g(z, torch.arange(K))
    diffs = (x[1:] - x[0]).abs().flatten(1).amax(1)
    assert (diffs > 1e-2 * x.abs().max()).all(), diffs


@pytest.mark.parametrize("arch", MODELS.names())
def test_labels_change_the_projection_discriminator_output(arch):
    torch.manual_seed(0)
    _, d = build_models(tiny_cond(arch, d_norm="spectral"), (3, 32, 32))
    d.eval()
    x = torch.rand(1, 3, 32, 32).mul(2).sub(1).repeat(K, 1, 1, 1)
    logits = d(x, torch.arange(K))
    assert logits.unique().numel() == K
    assert isinstance(d.label_head, ProjectionHead)


@pytest.mark.parametrize("arch", MODELS.names())
@pytest.mark.parametrize("g_cond,d_cond,mbstd", COND_VARIANTS)
def test_conditional_save_load_round_trip(arch, g_cond, d_cond, mbstd, tmp_path):
    torch.manual_seed(0)
    shape, cfg = (1, 28, 28), tiny_cond(arch, g_cond, d_cond, mbstd, d_norm="spectral")
    g, d = build_models(cfg, shape)
    _spread_cbn(g)
    y = torch.tensor([0, 1, 3, 4])
    d(g(torch.randn(4, 8), y), y)  # populate BN stats / spectral-norm vectors
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, tmp_path / "g.safetensors")
    save_file({k: v.contiguous() for k, v in d.state_dict().items()}, tmp_path / "d.safetensors")
    g2, d2 = build_models(cfg, shape)
    g2.load_state_dict(load_file(tmp_path / "g.safetensors"))
    d2.load_state_dict(load_file(tmp_path / "d.safetensors"))
    g.eval(), g2.eval(), d.eval(), d2.eval()
    z, y = torch.randn(2, 8), torch.tensor([2, 0])
    assert torch.equal(g(z, y), g2(z, y))
    assert torch.equal(d(g(z, y), y), d2(g(z, y), y))
    if d.aux:
        assert torch.equal(d.forward_aux(g(z, y))[1], d2.forward_aux(g(z, y))[1])


@pytest.mark.parametrize("arch", MODELS.names())
@pytest.mark.parametrize("d_norm", ["none", "spectral"])
def test_mbstd_couples_the_samples_of_a_group(arch, d_norm):
    torch.manual_seed(0)
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    x2 = x.clone()
    x2[1] = -x2[1]  # change one sample of the first group (0..3)
    outs = {}
    for mbstd in (False, True):
        torch.manual_seed(0)
        _, d = build_models(tiny(arch, d_norm=d_norm, mbstd=mbstd), (1, 28, 28))
        d.eval()
        assert any(isinstance(m, MinibatchStd) for m in d.modules()) == mbstd
        outs[mbstd] = (d(x), d(x2))
    a, b = outs[False]
    assert torch.allclose(a[[0, 2, 3]], b[[0, 2, 3]])  # without mbstd every sample is scored alone
    a, b = outs[True]
    assert not torch.allclose(a[[0, 2, 3]], b[[0, 2, 3]])  # with it, the group sees the change ...
    assert torch.allclose(a[4:], b[4:])  # ... and the other group does not


def test_minibatch_stddev_layer():
    layer = MinibatchStd()
    x = torch.randn(8, 3, 5, 5)
    out = layer(x)
    assert out.shape == (8, 4, 5, 5) and torch.equal(out[:, :3], x)
    std = x.view(2, 4, -1).std(dim=1, unbiased=False).mean(1)  # contiguous groups of 4
    assert torch.allclose(out[:, 3, 0, 0], std.repeat_interleave(4), atol=1e-5)
    assert (out[:, 3] == out[:, 3, :1, :1]).all()  # one constant map per sample
    assert layer(torch.randn(6, 10)).shape == (6, 11)  # vectors; 6 samples -> groups of 3
    assert layer(torch.randn(1, 2, 3, 3)).shape == (1, 3, 3, 3)  # a batch of one still works


def test_conditional_batchnorm_starts_as_batchnorm():
    cbn = ConditionalBatchNorm(6, K)
    bn = torch.nn.BatchNorm2d(6)
    x, y = torch.randn(4, 6, 3, 3), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(cbn(x, y), bn(x), atol=1e-6)
    assert (cbn.gamma.weight == 1).all() and (cbn.beta.weight == 0).all()
    assert ConditionalBatchNorm(6, K, dim=1)(torch.randn(4, 6), y).shape == (4, 6)


@pytest.mark.parametrize("arch", MODELS.names())
def test_cbn_without_batchnorm_is_refused(arch):
    with pytest.raises(ModelBuildError, match="g_cond=cbn.*g_norm=none.*g_cond=embed"):
        build_models(tiny_cond(arch, g_norm="none"), (1, 28, 28))
    g, _ = build_models(tiny_cond(arch, "embed", g_norm="none"), (1, 28, 28))
    assert g(torch.randn(2, 8), torch.tensor([0, 1])).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("size", [(28, 28), (32, 32), (48, 64)])
@pytest.mark.parametrize("c", [1, 3])
def test_resnet_sizes(size, c):
    torch.manual_seed(0)
    shape = (c, *size)
    k, bh, bw = plan_stages(*size)
    g, d = build_models(tiny_cond("resnet", d_norm="spectral"), shape)
    assert len(g.blocks) == k  # one up-sampling block per 2x stage
    assert (g.bh, g.bw) == (bh, bw)
    y = torch.tensor([0, 4, 2])
    x = g(torch.randn(3, 8), y)
    assert x.shape == (3, *shape)
    h = d.blocks(x)
    assert h.shape[2:] == (bh, bw)  # D comes back down to the base
    assert d(x, y).shape == (3,)


def test_resnet_discriminator_norms():
    _, d = build_models(tiny("resnet", d_norm="spectral"), (3, 32, 32))
    convs = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    _, d = build_models(tiny("resnet", d_norm="batch"), (3, 32, 32))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    assert not any(hasattr(m, "parametrizations") for m in d.modules())
    from ganforge.tasks.gan.resnet import ResNetDiscriminator

    d = ResNetDiscriminator((3, 32, 32), width=8)  # the class defaults to spectral norm, as SNGAN
    assert any(hasattr(m, "parametrizations") for m in d.modules())


def test_resnet_unbuildable_size():
    with pytest.raises(ModelSizeError, match=r"resnet cannot be built for 30x30.*data\.size"):
        build_models(tiny("resnet"), (1, 30, 30))
