"""The training run: folder layout, exact resume, determinism, atomic checkpoints, errors."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import ganforge
from ganforge import runs as ckpt
from ganforge.api import load_generator
from ganforge.config import ConfigError
from ganforge.errors import RunError, WriteError
from ganforge.training.parts import cpu_bf16_supported


def weights(run, which="last"):
    folder = ckpt.find_checkpoint(run, which)
    out = {}
    for key in ("generator", "generator_ema", "discriminator"):
        out.update({f"{key}.{k}": v for k, v in load_file(ckpt.weights_path(folder, key)).items()})
    return out, ckpt.load_state(folder)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_folder_contents(tmp_path, tiny_overrides):
    run = ganforge.train(overrides=tiny_overrides + ["train.steps=6", "train.tensorboard=true"], runs_dir=tmp_path)
    assert run.name == "00000-mnist-dcgan"
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "loss_curve.png",
        "samples/latest.png",
        "samples/step-00000000.png",
        "samples/step-00000004.png",
        "samples/step-00000006.png",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6]
    assert {"loss_d", "loss_g", "d_real", "d_fake", "img_per_s", "kimg"} <= lines[0].keys()
    cks = ckpt.list_checkpoints(run)
    assert [ckpt.step_of(p) for p in cks] == [4, 6]
    meta = json.loads((cks[-1] / "meta.json").read_text())
    assert meta["step"] == 6 and meta["kimg"] == pytest.approx(6 * 16 / 1000)
    # numbered folders
    run2 = ganforge.train(overrides=tiny_overrides + ["train.steps=1"], runs_dir=tmp_path)
    assert run2.name == "00001-mnist-dcgan"


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["loss.name=wgan-gp", "model.d_norm=none", "train.n_critic=2"],
        ["loss.r1_gamma=1", "loss.r1_every=2", "data.hflip=true"],
    ],
)
def test_resume_is_exact(tmp_path, tiny_overrides, extra):
    """An interrupted and resumed run ends bit-for-bit where an uninterrupted one does."""
    o = tiny_overrides + extra
    full = ganforge.train(overrides=o + ["train.steps=10"], runs_dir=tmp_path / "a")
    part = ganforge.train(overrides=o + ["train.steps=5"], runs_dir=tmp_path / "b")
    resumed = ganforge.train(resume=part, overrides=["train.steps=10"])
    assert resumed == part
    wa, sa = weights(full)
    wb, sb = weights(resumed)
    assert_same(wa, wb)
    assert sa["step"] == sb["step"] == 10
    assert torch.equal(sa["noise_gen"], sb["noise_gen"])
    for k in ("exp_avg", "exp_avg_sq"):
        for i in sa["opt_g"]["state"]:
            assert torch.equal(sa["opt_g"]["state"][i][k], sb["opt_g"]["state"][i][k])
    # the metric lines continue without gaps or duplicates
    steps = [json.loads(x)["step"] for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10]


def test_seed_determines_run_and_changes_it(tmp_path, tiny_overrides):
    a = ganforge.train(overrides=tiny_overrides + ["train.steps=3"], runs_dir=tmp_path)
    b = ganforge.train(overrides=tiny_overrides + ["train.steps=3"], runs_dir=tmp_path)
    c = ganforge.train(overrides=tiny_overrides + ["train.steps=3", "train.seed=1"], runs_dir=tmp_path)
    assert_same(weights(a)[0], weights(b)[0])
    wa, wc = weights(a)[0], weights(c)[0]
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_crash_while_writing_keeps_last_good_checkpoint(tmp_path, tiny_overrides, monkeypatch):
    run = ganforge.train(overrides=tiny_overrides + ["train.steps=4"], runs_dir=tmp_path)
    good, _ = weights(run)

    def broken_save(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    with pytest.raises(WriteError, match="cannot write checkpoint .*disk full.*are intact.*--resume"):
        ganforge.train(resume=run, overrides=["train.steps=8"])
    monkeypatch.undo()
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(run)] == [4]
    assert_same(weights(run)[0], good)
    # and the run resumes from it
    ganforge.train(resume=run, overrides=["train.steps=8"])
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(run)] == [4, 8]


def test_budgets(tmp_path, tiny_overrides):
    run = ganforge.train(overrides=tiny_overrides + ["train.kimg=0.1"], runs_dir=tmp_path)
    assert ckpt.read_json(ckpt.find_checkpoint(run) / "meta.json")["step"] == 7  # ceil(100 / 16)
    run = ganforge.train(overrides=tiny_overrides + ["train.epochs=0.5"], runs_dir=tmp_path)
    assert ckpt.read_json(ckpt.find_checkpoint(run) / "meta.json")["step"] == 8  # 128 images / 16
    run = ganforge.train(overrides=tiny_overrides + ["train.minutes=0.002"], runs_dir=tmp_path)
    assert ckpt.read_json(ckpt.find_checkpoint(run) / "meta.json")["elapsed_s"] >= 0.12


def test_resume_refuses_changes_to_the_model(tmp_path, tiny_overrides):
    run = ganforge.train(overrides=tiny_overrides + ["train.steps=2"], runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"cannot change 'model\.z_dim' when resuming"):
        ganforge.train(resume=run, overrides=["model.z_dim=4"])


def test_load_generator_and_sample(tmp_path, tiny_overrides):
    run = ganforge.train(overrides=tiny_overrides + ["train.steps=4"], runs_dir=tmp_path)
    g = load_generator(run)
    a, b = g.sample_uint8(5, seed=3), g.sample_uint8(5, seed=3)
    assert a.dtype == torch.uint8 and a.shape == (5, 1, 28, 28)
    assert torch.equal(a, b)
    assert not torch.equal(a, g.sample_uint8(5, seed=4))
    assert g.step == 4
    raw = load_generator(run, ema=False)
    assert not torch.equal(raw.sample(2, 0), g.sample(2, 0))


def test_not_a_run(tmp_path):
    with pytest.raises(RunError, match="is not a ganforge run folder"):
        load_generator(tmp_path)
    with pytest.raises(RunError, match="does not exist"):
        load_generator(tmp_path / "nope")
    (tmp_path / "config.yaml").write_text("{}\n")
    with pytest.raises(RunError, match="has no complete checkpoint"):
        load_generator(tmp_path)


def test_state_file_loads_with_weights_only(tmp_path, tiny_overrides):
    run = ganforge.train(overrides=tiny_overrides + ["train.steps=2"], runs_dir=tmp_path)
    state = torch.load(ckpt.find_checkpoint(run) / "state.pt", weights_only=True)
    assert state["step"] == 2


def test_in_training_evaluation_logs_fid_and_keeps_best(tmp_path, tiny_overrides):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = ganforge.train(
        overrides=tiny_overrides
        + ["train.steps=16", "eval.every_kimg=0.08", "eval.samples=64", "train.tensorboard=true"],
        runs_dir=tmp_path,
    )
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"fid"' in x]
    assert [e["step"] for e in evals] == [5, 10, 15]  # every 80 images at 16 per step
    assert all(e["eval_features"] == "mnist" and e["fid"] > 0 and 0 <= e["classes_covered"] <= 10 for e in evals)
    best = ckpt.find_checkpoint(run, "best")
    best_step = min(evals, key=lambda e: e["fid"])["step"]
    assert ckpt.read_json(best / "meta.json")["step"] == best_step
    assert load_generator(run, checkpoint="best").step == best_step
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("eval/fid")] == [5, 10, 15]
    assert "samples" in acc.Tags()["images"]
    assert "FID" in (run / "log.txt").read_text()


def test_inception_features_without_weights_fail_before_training(tmp_path, tiny_overrides, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(ConfigError, match=r"eval\.features=inception: .*(weights|Inception)"):
        ganforge.train(overrides=tiny_overrides + ["train.steps=2", "eval.features=inception"], runs_dir=tmp_path)
    assert not list(tmp_path.glob("0000*"))  # nothing was written


@pytest.mark.parametrize(
    "preset", ["default", "mnist-mlp", "wgan-gp", "dcgan-classic", "dcgan-stable", "sngan", "small-data", "mnist-cond"]
)
def test_every_gan_preset_trains(preset, tmp_path, tiny_overrides):
    extra = ["data.size=32"] if preset == "dcgan-classic" else []  # 64x64 is the recipe; keep the test small
    run = ganforge.train(
        preset=preset, overrides=tiny_overrides + extra + ["train.steps=2", "train.n_critic=1"], runs_dir=tmp_path
    )
    assert load_generator(run).sample_uint8(2).shape[0] == 2


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bfloat16 support")
def test_bfloat16_autocast_on_a_cpu_that_supports_it(tmp_path, tiny_overrides):
    """train.amp=true on a bfloat16 CPU: activations in bfloat16, weights and losses float32 and finite,
    and the run still resumes exactly (the CPU kernels are deterministic)."""
    from ganforge.tasks import resolve
    from ganforge.tasks.gan.trainer import GanTrainer as Trainer

    tr = Trainer(resolve(None, tiny_overrides + ["train.amp=true"]), dry_run=True, log=lambda m: None)
    assert tr.amp
    seen = {}

    def record(module, inputs, output):
        seen.setdefault("dtype", output.dtype)

    hook = tr.G.register_forward_hook(record)
    stats = tr.train_step()
    hook.remove()
    assert seen["dtype"] == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in tr.G.parameters())
    assert all(math.isfinite(v) for v in stats.values())
    o = tiny_overrides + ["train.amp=true"]
    full = ganforge.train(overrides=o + ["train.steps=6"], runs_dir=tmp_path / "a")
    part = ganforge.train(overrides=o + ["train.steps=3"], runs_dir=tmp_path / "b")
    resumed = ganforge.train(resume=part, overrides=["train.steps=6"])
    assert_same(weights(full)[0], weights(resumed)[0])


def test_gpu_features_fall_back_on_cpu(tmp_path, tiny_overrides, monkeypatch):
    """amp needs CUDA or a bfloat16 CPU, and compile may fail: both fall back to plain float32 eager
    training, with a message."""
    from ganforge.tasks import resolve
    from ganforge.tasks.gan.trainer import GanTrainer as Trainer
    from ganforge.training import parts

    monkeypatch.setattr(parts, "cpu_bf16_supported", lambda: False)

    def broken_compile(module):
        def fails(*args):
            raise RuntimeError("no compiler")

        return fails

    monkeypatch.setattr(torch, "compile", broken_compile)
    msgs = []
    tr = Trainer(
        resolve(None, tiny_overrides + ["train.amp=true", "train.compile=true"]), dry_run=True, log=msgs.append
    )
    stats = tr.train_step()
    assert all(v == v for v in stats.values())  # finite numbers from the eager fallback
    assert not tr.amp and any("no native bfloat16 support" in m for m in msgs)
    assert any("torch.compile failed on first use" in m for m in msgs)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            Trainer(resolve(None, tiny_overrides + ["train.device=cuda"]), dry_run=True)


def test_decay_lr_is_linear_in_steps_and_leaves_constant_rates_alone():
    from ganforge.training.parts import decay_lr

    net = torch.nn.Linear(2, 2)
    optims = {"g": torch.optim.Adam(net.parameters(), lr=1.0), "d": torch.optim.Adam(net.parameters(), lr=0.5)}
    base = {"g": 0.2, "d": 0.1}
    seen = [decay_lr(optims, base, step, 10, 4) for step in (0, 10, 11, 13, 14, 20)]
    assert seen == [1.0, 1.0, 0.75, 0.25, 0.0, 0.0]
    assert optims["g"].param_groups[0]["lr"] == 0.0 and optims["d"].param_groups[0]["lr"] == 0.0
    decay_lr(optims, base, 11, 10, 4)
    assert math.isclose(optims["g"].param_groups[0]["lr"], 0.15) and math.isclose(
        optims["d"].param_groups[0]["lr"], 0.075
    )
    assert decay_lr(optims, base, 100, 10, 0) == 1.0 and math.isclose(
        optims["g"].param_groups[0]["lr"], 0.15
    )  # steps=0: untouched
