"""GPU paths: training, mixed precision, torch.compile, resume and evaluation on CUDA.

Skipped where no CUDA device is present (CI has none); run on a GPU machine with
``python -m pytest -q tests/test_cuda.py``.
"""

import json

import pytest
import torch

import ganforge
from ganforge import runs as ckpt
from ganforge.api import load_generator
from ganforge.tasks import resolve
from ganforge.tasks.gan.trainer import GanTrainer as Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = ["train.device=cuda"]


def _metrics(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_runs_on_the_gpu_and_samples_on_the_cpu(tmp_path, tiny_overrides):
    msgs = []
    tr = Trainer(resolve(None, tiny_overrides + CUDA), dry_run=True, log=msgs.append)
    assert next(tr.G.parameters()).is_cuda and next(tr.D.parameters()).is_cuda
    run = ganforge.train(overrides=tiny_overrides + CUDA + ["train.steps=6"], runs_dir=tmp_path)
    assert all(r["loss_d"] == r["loss_d"] for r in _metrics(run))
    # a GPU-trained checkpoint loads on the CPU and gives the GPU's samples
    cpu = load_generator(run, device="cpu")
    gpu = load_generator(run, device="cuda")
    a, b = cpu.sample(8, seed=1), gpu.sample(8, seed=1)
    assert a.shape == b.shape == (8, 1, 28, 28)
    assert torch.allclose(a, b, atol=1e-3)


def test_mixed_precision_trains_in_bfloat16_with_finite_losses(tmp_path, tiny_overrides):
    msgs = []
    tr = Trainer(resolve(None, tiny_overrides + CUDA + ["train.amp=true"]), dry_run=True, log=msgs.append)
    assert tr.amp and not any("needs a CUDA device" in m for m in msgs)
    seen = {}

    def record(module, inputs, output):
        seen.setdefault("dtype", output.dtype)  # returns None: the output is left as it is

    hook = tr.G.register_forward_hook(record)
    for _ in range(20):
        stats = tr.train_step()
    hook.remove()
    assert seen["dtype"] == torch.bfloat16
    assert all(v == v and abs(v) != float("inf") for v in stats.values())
    # the weights stay float32 (autocast, not a half-precision copy of the model)
    assert all(p.dtype == torch.float32 for p in tr.G.parameters())


def test_compile_on_the_gpu_runs_compiled(tmp_path, tiny_overrides):
    msgs = []
    tr = Trainer(resolve(None, tiny_overrides + CUDA + ["train.compile=true"]), dry_run=True, log=msgs.append)
    for _ in range(3):
        stats = tr.train_step()
    assert all(v == v for v in stats.values())
    assert not any("compile" in m and "failed" in m for m in msgs), msgs


def test_resume_on_the_gpu_continues_the_run(tmp_path, tiny_overrides):
    """On CUDA, cuDNN's convolution kernels are not bit-deterministic by default: a resumed run
    must continue from the saved step with the saved RNG and optimiser state; its weights match
    an uninterrupted run's closely (not bit for bit)."""
    o = tiny_overrides + CUDA
    full = ganforge.train(overrides=o + ["train.steps=10"], runs_dir=tmp_path / "a")
    part = ganforge.train(overrides=o + ["train.steps=5"], runs_dir=tmp_path / "b")
    resumed = ganforge.train(resume=part, overrides=["train.steps=10"])
    assert [r["step"] for r in _metrics(resumed)] == [2, 4, 6, 8, 10]
    sa = ckpt.load_state(ckpt.find_checkpoint(full, "last"))
    sb = ckpt.load_state(ckpt.find_checkpoint(resumed, "last"))
    assert sa["step"] == sb["step"] == 10
    ga = load_generator(full, device="cpu").sample(8, seed=0)
    gb = load_generator(resumed, device="cpu").sample(8, seed=0)
    assert (ga - gb).abs().max() < 0.05


def test_completion_network_trains_on_the_gpu(tmp_path, tiny_overrides):
    o = (
        tiny_overrides
        + CUDA
        + ["task=inpaint", "inpaint.width=8", "inpaint.d_width=8", "train.amp=true", "train.steps=4"]
    )
    run = ganforge.train(overrides=o, runs_dir=tmp_path)
    lines = _metrics(run)
    assert lines and all(v == v for r in lines for v in r.values() if isinstance(v, float))
    assert ckpt.list_checkpoints(run)


def test_evaluation_extracts_features_on_the_gpu(tmp_path, tiny_overrides):
    from ganforge.metrics import evaluate

    run = ganforge.train(overrides=tiny_overrides + CUDA + ["train.steps=2"], runs_dir=tmp_path)
    kw = dict(
        metrics="fid", num_samples=500, reference="test", features="mnist", coverage=False, cache_dir=tmp_path / "cache"
    )
    res_gpu = evaluate(run, device="cuda", **kw)
    res_cpu = evaluate(run, device="cpu", **kw)
    assert res_gpu["fid"] == pytest.approx(res_cpu["fid"], rel=1e-3, abs=1e-2)


@pytest.mark.parametrize("features", ["mnist", "discriminator"])
def test_unlabelled_data_trains_on_clusters_on_the_gpu(tmp_path, tiny_overrides, features):
    o = ["model.conditional=auto", "data.labels=false", f"model.cluster_features={features}"]
    run = ganforge.train(
        overrides=tiny_overrides + CUDA + o + ["model.recluster_every=2", "train.amp=true", "train.steps=4"],
        runs_dir=tmp_path,
    )
    state = ckpt.load_state(ckpt.find_checkpoint(run))["clusters"]
    assert state["labels"].device.type == "cpu" and state["count"] == (1 if features == "mnist" else 2)
    g = load_generator(run, device="cuda")
    assert g.num_classes == 10 and g.sample_uint8(8, seed=0).shape == (8, 1, 28, 28)
