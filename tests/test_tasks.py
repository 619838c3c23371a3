"""Every registered task, tested by being registered: tiny training, dry run, exact resume, loading,
inference shapes; and run folders written before tasks were plug-ins (tests/fixtures/v0-*)."""

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ganforge
from ganforge import runs
from ganforge.api import load, trainer
from ganforge.errors import ConfigError, RunError
from ganforge.tasks import TASKS, get_task, resolve

FIXTURES = Path(__file__).parent / "fixtures"
COMMON = [
    "data.limit=64",
    "train.batch_size=16",
    "train.progress=false",
    "train.tensorboard=false",
    "train.log_every=1",
    "train.sample_every=2",
    "train.checkpoint_every=2",
    "train.sample_count=8",
    "train.minutes=null",
]


def overrides(task: str, *extra: str):
    return [f"task={task}", *COMMON, *get_task(task).tiny, *extra]


def state_of(run: Path):
    """Every network's weights and every optimiser's state of the run's last checkpoint."""
    folder = runs.find_checkpoint(run, "last")
    weights = {f.name: load_file(str(f)) for f in sorted(folder.glob("*.safetensors"))}
    state = runs.load_state(folder)
    return weights, {k: v for k, v in state.items() if k.startswith("opt_")}, state["step"]


def assert_equal_nested(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_equal_nested(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_nested(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("task", TASKS.names())
def test_tiny_training_writes_a_run_that_loads(task, tmp_path):
    run = ganforge.train(overrides=overrides(task, "train.steps=2"), runs_dir=tmp_path)
    assert runs.run_task(run) == task
    assert (run / "samples" / "latest.png").is_file() and (run / "metrics.jsonl").is_file()
    ck = runs.open_checkpoint(run)
    assert ck.task == task and ck.step == 2
    cfg = ganforge.resolve(None, overrides(task))
    assert set(ck.config["config"]) == {"name", "task", *cfg.sections()}  # only the task's sections are stored
    h = load(run)
    assert h.task == task and h.step == 2 and h.run_dir == run
    inputs = h.export_inputs(3)
    with torch.no_grad():
        out = h.module(*inputs)
    assert tuple(out.shape) == h.output_shape(3) and torch.isfinite(out).all()
    # the handle's network is the checkpoint's EMA (or trained) weights, bit for bit
    name = "generator_ema" if h.ema else "generator"
    saved = load_file(str(runs.weights_path(ck.folder, name)))
    assert all(torch.equal(v, saved[k]) for k, v in h.module.state_dict().items())


@pytest.mark.parametrize("task", TASKS.names())
def test_dry_run_writes_nothing(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tr = trainer(preset=None, overrides=overrides(task), runs_dir=tmp_path / "runs", dry_run=True)
    assert tr.run() == Path(".")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("task", TASKS.names())
def test_resume_is_exact_to_the_bit(task, tmp_path):
    full = ganforge.train(overrides=overrides(task, "train.steps=4"), runs_dir=tmp_path / "a")
    half = ganforge.train(overrides=overrides(task, "train.steps=2"), runs_dir=tmp_path / "b")
    resumed = ganforge.train(resume=half, overrides=["train.steps=4"])
    assert resumed == half
    wa, oa, sa = state_of(full)
    wb, ob, sb = state_of(resumed)
    assert sa == sb == 4
    assert_equal_nested(wa, wb, "weights")
    assert_equal_nested(oa, ob, "optimisers")


@pytest.mark.parametrize("task", TASKS.names())
def test_sections_of_other_tasks_are_refused(task):
    cfg = resolve(None, overrides(task))
    assert cfg.task == task
    others = {s for t in TASKS.names() for s in get_task(t).sections} - set(cfg.sections())
    for section in others:
        with pytest.raises(ConfigError, match=f"does not apply to task '{task}'"):
            resolve(None, overrides(task) + [f"{section}.x=1"])


def test_unknown_task_lists_the_tasks():
    with pytest.raises(ConfigError, match=r"task: 'audio' is not allowed; choose one of: gan, inpaint"):
        resolve(None, ["task=audio"])


# ---- run folders of the format before tasks were plug-ins -------------------------------------


@pytest.fixture
def v0(tmp_path):
    def copy(name):
        dst = tmp_path / name
        shutil.copytree(FIXTURES / name, dst)
        return dst

    return copy


def test_v0_gan_run_loads_samples_and_resumes(v0):
    run = v0("v0-gan-run")
    g = ganforge.load_generator(run)
    assert g.num_classes == 10 and g.class_names[3] == "3" and g.step == 4
    imgs = g.sample_uint8(4, seed=0, labels=7)
    assert imgs.shape == (4, 1, 28, 28) and imgs.dtype == torch.uint8
    assert torch.equal(imgs, g.sample_uint8(4, seed=0, labels=7))
    ganforge.train(resume=run, overrides=["train.steps=6"])
    assert runs.open_checkpoint(run).step == 6
    assert ganforge.load(run).step == 6


def test_v0_inpaint_run_loads_completes_and_resumes(v0):
    run = v0("v0-inpaint-run")
    h = ganforge.load(run)
    assert h.task == "inpaint" and h.ema and h.step == 4
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    mask = torch.zeros(2, 1, 28, 28)
    mask[..., 8:16, 8:16] = 1
    out = h.complete(images, mask)
    assert torch.equal(out[mask.expand_as(out) == 0], images[mask.expand_as(images) == 0])
    ganforge.train(resume=run, overrides=["train.steps=6"])
    assert runs.open_checkpoint(run).step == 6


def test_load_generator_refuses_another_task(v0):
    with pytest.raises(RunError, match="trained task .inpaint., not a GAN"):
        ganforge.load_generator(v0("v0-inpaint-run"))


def test_switching_the_task_drops_the_presets_other_sections(tmp_path):
    cfg = resolve("default", ["task=inpaint"])  # what `ganforge train task=inpaint` resolves
    assert cfg.task == "inpaint" and "model" not in cfg and cfg.train.threads == 1  # shared keys still apply
    p = tmp_path / "mine.yaml"
    p.write_text("task: inpaint\nloss:\n  name: hinge\n")  # a preset of its own task is checked whole
    with pytest.raises(ConfigError, match="section 'loss' does not apply to task 'inpaint'"):
        resolve(str(p))
    with pytest.raises(ConfigError, match="section 'model' does not apply to task 'inpaint'"):
        resolve("default", ["task=inpaint", "model.z_dim=3"])
