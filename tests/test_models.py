"""Every registered model, at several image sizes: shapes, range, backward, save/load round trip."""
import pytest
import torch
from safetensors.torch import load_file, save_file

from ganforge.config import ConfigError, ModelConfig, resolve
from ganforge.models import MODELS, build_models
from ganforge.models.dcgan import ModelSizeError, plan_stages

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


def test_unbuildable_size_is_a_config_error():
    from ganforge.training.trainer import Trainer

    class Data:
        images = torch.zeros(8, 1, 30, 30, dtype=torch.uint8)
        labels, class_names, name, source, skipped = None, [], "x", "x", []

    cfg = resolve(None, ["train.steps=1", "train.batch_size=4"])
    with pytest.raises(ConfigError, match=r"model\.arch=dcgan: dcgan cannot be built for 30x30"):
        Trainer(cfg, data=Data(), dry_run=True)
