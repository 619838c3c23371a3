"""Training a completion network: run folder, exact resume, budgets, interruption, learning."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from ganforge import runs as ckpt
from ganforge.config import ConfigError
from ganforge.tasks import resolve
from ganforge.tasks.inpaint.task import load_inpainter
from ganforge.tasks.inpaint.trainer import InpaintTrainer
from tests.test_inpaint_model import TINY_INPAINT as TINY  # the tiny completion config


def train(overrides, runs_dir=None, resume=None, **kw):
    """Like ``ganforge train``: a new run from overrides, or ``resume`` with budget overrides."""
    if resume is not None:
        from ganforge.api import resume_config

        cfg = resume_config(resume, overrides)
    else:
        cfg = resolve(None, TINY + overrides)
    return InpaintTrainer(cfg, runs_dir=runs_dir or "runs", resume=resume, log=lambda m: None, **kw).run()


def weights(run):
    folder = ckpt.find_checkpoint(run, "last")
    out = {}
    for key in ("generator", "generator_ema", "discriminator"):
        out.update({f"{key}.{k}": v for k, v in load_file(ckpt.weights_path(folder, key)).items()})
    return out, ckpt.load_state(folder)


def records(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_folder_contents(tmp_path):
    run = train(["train.steps=6", "train.tensorboard=true"], tmp_path)
    assert run.name == "00000-mnist-inpaint-gated"
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "loss_curve.png",
        "log.txt",
        "samples/latest.png",
        "samples/step-00000000.png",
        "samples/step-00000004.png",
        "samples/step-00000006.png",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert "task: inpaint" in (run / "config.yaml").read_text()
    recs = records(run)
    train_recs = [r for r in recs if "l1_hole" in r]
    assert [r["step"] for r in train_recs] == [2, 4, 6]
    assert {"l1_hole", "l1_valid", "adv_g", "loss_d", "loss_g", "img_per_s", "kimg"} <= train_recs[0].keys()
    assert [r["step"] for r in recs if "val_l1_hole" in r] == [0, 4, 6]
    cks = ckpt.list_checkpoints(run)
    assert [ckpt.step_of(p) for p in cks] == [4, 6]
    files = sorted(p.name for p in cks[-1].iterdir())
    assert files == [
        "config.json",
        "discriminator.safetensors",
        "generator.safetensors",
        "generator_ema.safetensors",
        "meta.json",
        "state.pt",
    ]
    mc = json.loads((cks[-1] / "config.json").read_text())
    assert mc["task"] == "inpaint" and mc["img_shape"] == [1, 28, 28] and mc["config"]["task"] == "inpaint"
    meta = json.loads((cks[-1] / "meta.json").read_text())
    assert meta["step"] == 6 and meta["kimg"] == pytest.approx(6 * 16 / 1000)
    assert torch.load(cks[-1] / "state.pt", weights_only=True)["step"] == 6
    # sample grid: 16 validation images in 2 groups of 8 columns x (masked | completion | original)
    from PIL import Image

    grid = Image.open(run / "samples" / "latest.png")
    assert grid.size == (8 * 30 + 2, 6 * 30 + 2)
    assert train(["train.steps=1", "inpaint.arch=partial"], tmp_path).name == "00001-mnist-inpaint-partial"


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["inpaint.arch=partial", "inpaint.masks=free", "data.hflip=true"],
        ["inpaint.adv_weight=0", "inpaint.masks=box"],
    ],
)
def test_resume_is_exact(tmp_path, extra):
    """An interrupted and resumed run ends bit for bit where an uninterrupted one does."""
    full = train(extra + ["train.steps=10"], tmp_path / "a")
    part = train(extra + ["train.steps=5"], tmp_path / "b")
    resumed = train(["train.steps=10"], resume=part)
    assert resumed == part
    wa, sa = weights(full)
    wb, sb = weights(resumed)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert sa["step"] == sb["step"] == 10
    for k in ("mask_gen", "noise_gen"):
        assert torch.equal(sa[k], sb[k])
    for opt in ("opt_g", "opt_d"):
        for i in sa[opt]["state"]:
            for k in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(sa[opt]["state"][i][k], sb[opt]["state"][i][k])
    # the metric lines continue without gaps or duplicates
    assert [r["step"] for r in records(resumed) if "l1_hole" in r] == [2, 4, 6, 8, 10]
    assert [r["step"] for r in records(resumed) if "val_l1_hole" in r] == [0, 4, 5, 8, 10]


def test_training_lowers_the_hole_error(tmp_path):
    run = train(
        [
            "train.steps=240",
            "train.log_every=40",
            "train.sample_every=120",
            "train.checkpoint_every=1000",
            "g_optim.lr=1e-3",
        ],
        tmp_path,
    )
    val = [r["val_l1_hole"] for r in records(run) if "val_l1_hole" in r]
    assert len(val) == 3
    assert val[-1] < 0.5 * val[0], val
    # and the network does better than filling the hole with the background
    h = load_inpainter(run)
    from ganforge.data import load_dataset
    from ganforge.tasks.inpaint.masks import center_box_mask

    x = load_dataset(resolve(None, ["data.limit=256"]).data).images
    m = center_box_mask(28, 28, 14, 14)
    hole = m.bool().expand_as(x)
    err_net = (h.complete(x, m).float() - x.float()).abs()[hole].mean()
    err_black = x.float()[hole].mean()
    assert err_net < err_black


def test_ema_weights_are_kept_and_optional(tmp_path):
    run = train(["train.steps=4", "train.ema_decay=0.9"], tmp_path)
    h, raw = load_inpainter(run), load_inpainter(run, ema=False)
    assert h.ema and not raw.ema
    wh = [p.detach().clone() for p in h.module.parameters()]
    wr = [p.detach().clone() for p in raw.module.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(wh, wr))
    run = train(["train.steps=4", "train.ema_decay=0"], tmp_path)
    assert not (ckpt.find_checkpoint(run) / "generator_ema.safetensors").exists()
    h = load_inpainter(run)  # falls back to the trained weights
    assert not h.ema
    sd, saved = h.module.state_dict(), load_file(ckpt.find_checkpoint(run) / "generator.safetensors")
    assert sd.keys() == saved.keys() and all(torch.equal(sd[k], saved[k]) for k in saved)


def test_budgets(tmp_path):
    run = train(["train.kimg=0.1"], tmp_path)
    assert ckpt.read_json(ckpt.find_checkpoint(run) / "meta.json")["step"] == 7  # ceil(100 / 16)
    run = train(["train.epochs=0.5"], tmp_path)
    assert ckpt.read_json(ckpt.find_checkpoint(run) / "meta.json")["step"] == 8  # 128 images / 16
    run = train(["train.minutes=0.002"], tmp_path)
    assert ckpt.read_json(ckpt.find_checkpoint(run) / "meta.json")["elapsed_s"] >= 0.12
    assert len(ckpt.list_checkpoints(train(["train.steps=12", "train.keep_checkpoints=2"], tmp_path))) == 2


def test_seed_determines_the_run(tmp_path):
    a = weights(train(["train.steps=3"], tmp_path))[0]
    b = weights(train(["train.steps=3"], tmp_path))[0]
    c = weights(train(["train.steps=3", "train.seed=1"], tmp_path))[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_sigint_writes_a_checkpoint_and_resumes(tmp_path):
    cfg = resolve(None, TINY + ["train.steps=20"])
    tr = InpaintTrainer(cfg, runs_dir=tmp_path, log=lambda m: None)
    step = tr.train_step

    def step_then_interrupt():
        out = step()
        if tr.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    tr.train_step = step_then_interrupt
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        tr.run()
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tr.run_dir)] == [3]
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    assert train([], resume=tr.run_dir) == tr.run_dir
    assert ckpt.step_of(ckpt.find_checkpoint(tr.run_dir)) == 20


def test_dry_run_writes_nothing(tmp_path):
    cfg = resolve(None, TINY + ["train.steps=5"])
    assert str(InpaintTrainer(cfg, runs_dir=tmp_path / "runs", dry_run=True, log=lambda m: None).run()) == "."
    assert not (tmp_path / "runs").exists()


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs task=inpaint"):
        InpaintTrainer(resolve(None, ["train.steps=1"]), runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"inpaint.arch=gated: .*set data.size=32x32"):
        InpaintTrainer(resolve(None, TINY + ["data.size=30"]), runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="larger than the dataset"):
        InpaintTrainer(resolve(None, TINY + ["data.limit=8"]), runs_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_colour_images_at_48x64(tmp_path):
    from ganforge.data import ImageData

    g = torch.Generator().manual_seed(0)
    imgs = (torch.rand(40, 3, 12, 16, generator=g) * 255).to(torch.uint8)
    imgs = torch.nn.functional.interpolate(imgs.float(), size=(48, 64), mode="bilinear").round().to(torch.uint8)
    data = ImageData(imgs, None, [], "blobs", "memory")
    cfg = resolve(None, TINY + ["train.steps=2", "train.batch_size=8", "train.sample_count=8", "name=blobs"])
    run = InpaintTrainer(cfg, runs_dir=tmp_path, data=data, log=lambda m: None).run()
    h = load_inpainter(run)
    assert h.img_shape == (3, 48, 64) and h.module.levels == 3
    out = h.complete(imgs[:2], torch.ones(1, 1, 48, 64))
    assert out.shape == (2, 3, 48, 64)


def test_mnist_inpaint_preset_trains_on_the_training_part(tmp_path):
    """`ganforge train mnist-inpaint`: a completion network on the 8,000 digits outside the held-out part."""
    import ganforge

    cfg = resolve("mnist-inpaint")
    assert cfg.task == "inpaint" and cfg.data.heldout == 2000 and cfg.data.part == "train"
    run = ganforge.train(
        preset="mnist-inpaint", overrides=TINY[1:] + ["data.limit=2100", "train.steps=2"], runs_dir=tmp_path
    )
    assert run.name == "00000-mnist-inpaint-gated"
    g = load_inpainter(run)
    x = torch.full((2, 1, 28, 28), 7, dtype=torch.uint8)
    hole = torch.zeros(2, 1, 28, 28)
    hole[:, :, 7:21, 7:21] = 1
    out = g.complete(x, hole)
    assert out.shape == (2, 1, 28, 28) and out.dtype == torch.uint8
    assert torch.equal(out[hole.bool().logical_not()], x[hole.bool().logical_not()])
