"""Weight transfer (training/transfer.py): init_from copies exactly and resumes exactly, freeze_d leaves
the frozen blocks bit-identical, and mismatching sources fail with one line naming the key."""

import json

import pytest
import torch
from safetensors.torch import load_file

import ganforge
from ganforge import runs
from ganforge.api import trainer
from ganforge.cli import main
from ganforge.errors import ConfigError, RunError
from ganforge.tasks import TASKS, get_task, resolve
from ganforge.tasks.gan.networks import build_models
from ganforge.tasks.inpaint.networks import PatchDiscriminator
from ganforge.training.transfer import RECORD, discriminator_blocks

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


def overrides(task, *extra):
    return [f"task={task}", *COMMON, *get_task(task).tiny, *extra]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained source run of every task (3 steps), made once."""
    made = {}

    def get(task):
        if task not in made:
            made[task] = ganforge.train(
                overrides=overrides(task, "train.steps=3"), runs_dir=tmp_path_factory.mktemp(f"source-{task}")
            )
        return made[task]

    return get


def last_weights(run):
    folder = runs.find_checkpoint(run, "last")
    return {f.name[: -len(".safetensors")]: load_file(str(f)) for f in folder.glob("*.safetensors")}


@pytest.mark.parametrize("task", TASKS.names())
def test_init_from_copies_every_network_exactly(task, source, tmp_path):
    src = source(task)
    tr = trainer(overrides=overrides(task, "train.steps=1", "train.seed=7"), runs_dir=tmp_path, init_from=src)
    want = last_weights(src)
    assert set(tr.nets) == set(want)
    for name, net in tr.nets.items():
        sd = net.state_dict()
        assert sd.keys() == want[name].keys()
        assert all(torch.equal(sd[k], want[name][k]) for k in sd), name
    rec = json.loads((tr.run_dir / RECORD).read_text())["init_from"]
    n = sum(len(v) for v in want.values())
    assert rec["copied"] == n and rec["skipped"] == 0 and rec["not_copied"] == [] and rec["step"] == 3
    assert rec["run"] == str(src.resolve())
    assert f"copied {n} of {n} tensors" in (tr.run_dir / "log.txt").read_text()
    # without init_from the same config starts elsewhere (the test above is not vacuous)
    fresh = trainer(overrides=overrides(task, "train.seed=7"), dry_run=True)
    assert any(
        not torch.equal(fresh.nets[name].state_dict()[k], v)
        for name in want
        for k, v in want[name].items()
        if v.is_floating_point()
    )


def test_init_from_copies_what_matches_and_reports_the_rest(source, tmp_path):
    # a wider discriminator: D's tensors change shape, G and its EMA match
    tr = trainer(overrides=overrides("gan", "model.d_width=16"), runs_dir=tmp_path, init_from=source("gan"))
    rec = json.loads((tr.run_dir / RECORD).read_text())["init_from"]
    nets = rec["networks"]
    assert nets["generator"]["copied"] == nets["generator"]["tensors"] > 0
    assert 0 < nets["discriminator"]["copied"] < nets["discriminator"]["tensors"]  # e.g. the head's bias [1] fits
    assert rec["skipped"] == len(rec["not_copied"]) > 0
    assert "discriminator.features.0.weight: shape [8, 1, 4, 4] in the source, [16, 1, 4, 4] here" in rec["not_copied"]
    log = (tr.run_dir / "log.txt").read_text()
    assert "not copied: discriminator.features.0.weight: shape [8, 1, 4, 4] in the source, [16, 1, 4, 4] here" in log
    src_d = last_weights(source("gan"))["discriminator"]
    assert torch.equal(tr.D.head.bias, src_d["head.bias"])


def test_init_from_reports_a_network_the_source_lacks(tmp_path):
    src = ganforge.train(overrides=overrides("inpaint", "train.steps=1", "train.ema_decay=0"), runs_dir=tmp_path / "a")
    tr = trainer(overrides=overrides("inpaint"), runs_dir=tmp_path / "b", init_from=src)
    rec = json.loads((tr.run_dir / RECORD).read_text())["init_from"]
    n = rec["networks"]["generator_ema"]["tensors"]
    assert rec["networks"]["generator_ema"]["copied"] == 0 and rec["skipped"] == n > 0
    assert rec["not_copied"] == [f"generator_ema: not in the source ({n} tensors)"]
    assert rec["copied"] == rec["networks"]["generator"]["tensors"] + rec["networks"]["discriminator"]["tensors"]


def test_init_from_refuses_sources_that_do_not_fit(source, tmp_path):
    with pytest.raises(ConfigError, match=r"^init_from: no tensor of .* matches this run's networks by name and shape"):
        trainer(overrides=overrides("gan", "model.arch=mlp"), runs_dir=tmp_path, init_from=source("gan"))
    with pytest.raises(ConfigError, match=r"^init_from: .* trained task 'inpaint', this run trains 'gan'"):
        trainer(overrides=overrides("gan"), runs_dir=tmp_path, init_from=source("inpaint"))
    with pytest.raises(RunError, match="does not exist"):
        trainer(overrides=overrides("gan"), runs_dir=tmp_path, init_from=tmp_path / "nowhere")
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_init_from_a_checkpoint_folder(source, tmp_path):
    src = source("gan")
    folder = runs.find_checkpoint(src, "2")
    tr = trainer(overrides=overrides("gan"), runs_dir=tmp_path, init_from=folder)
    want = load_file(str(folder / "generator.safetensors"))
    assert all(torch.equal(v, want[k]) for k, v in tr.G.state_dict().items())
    assert json.loads((tr.run_dir / RECORD).read_text())["init_from"]["step"] == 2


@pytest.mark.parametrize("task", TASKS.names())
def test_init_from_with_freeze_d_resumes_exactly(task, source, tmp_path):
    kw = dict(init_from=source(task), freeze_d=1)
    full = ganforge.train(overrides=overrides(task, "train.steps=4"), runs_dir=tmp_path / "a", **kw)
    half = ganforge.train(overrides=overrides(task, "train.steps=2"), runs_dir=tmp_path / "b", **kw)
    assert ganforge.train(resume=half, overrides=["train.steps=4"]) == half  # no init_from: the run knows
    a, b = runs.find_checkpoint(full, "last"), runs.find_checkpoint(half, "last")
    assert a.name == b.name == "step-00000004"
    for f in a.glob("*.safetensors"):
        wa, wb = load_file(str(f)), load_file(str(b / f.name))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f.name
    sa, sb = runs.load_state(a), runs.load_state(b)
    for key in (k for k in sa if k.startswith("opt_")):
        for pa, pb in zip(sa[key]["state"].values(), sb[key]["state"].values()):
            assert all(torch.equal(pa[k], pb[k]) if torch.is_tensor(pa[k]) else pa[k] == pb[k] for k in pa)
    with pytest.raises(ConfigError, match=r"^init_from: weight transfer starts a new run"):
        ganforge.train(resume=half, init_from=source(task))


@pytest.mark.parametrize("task", TASKS.names())
def test_freeze_d_keeps_the_frozen_blocks_bit_identical(task, source, tmp_path):
    src = last_weights(source(task))
    fast = ("d_optim.lr=0.01", "train.steps=3")

    def trained(freeze):
        run = ganforge.train(
            overrides=overrides(task, *fast), runs_dir=tmp_path / str(freeze), init_from=source(task), freeze_d=freeze
        )
        return run, last_weights(run)

    run, w = trained(1)
    frozen = json.loads((run / RECORD).read_text())["freeze_d"]["parameters"]  # {discriminator network: names}
    assert frozen and all(n == "discriminator" or n.endswith("_discriminator") for n in frozen)
    _, w0 = trained(0)  # without freezing the same tensors move
    for net, names in frozen.items():
        d, src_d, block = w[net], src[net], set(names)
        assert block and block < set(d)
        assert all(torch.equal(d[k], src_d[k]) for k in block), net  # frozen: bit-identical
        changed = [k for k in set(d) - block if d[k].is_floating_point() and not torch.equal(d[k], src_d[k])]
        assert changed, net  # the rest of D trains
        assert any(not torch.equal(w0[net][k], src_d[k]) for k in block), net


def test_discriminator_blocks_of_every_family():
    shape = (1, 28, 28)
    want = {
        "dcgan": 2,
        "mlp": 2,
        "resnet": 3,
    }  # 28 = 7 x 2^2: two strided convs; two hidden layers; 2 down + 1 residual
    for arch, n in want.items():
        cfg = resolve(None, [f"model.arch={arch}", "model.d_width=8", "model.d_norm=none"]).model
        blocks = discriminator_blocks(build_models(cfg, shape)[1])
        assert len(blocks) == n, arch
        assert all(params for _, params in blocks) and not any("head" in p for _, ps in blocks for p in ps)
    dc = discriminator_blocks(build_models(resolve(None, ["model.d_width=8"]).model, shape)[1])
    assert [d for d, _ in dc] == [
        "features.0 Conv2d + features.1 LeakyReLU",
        "features.2 Conv2d + features.3 BatchNorm2d + features.4 LeakyReLU",
    ]
    assert dc[1][1] == ["features.2.weight", "features.3.weight", "features.3.bias"]
    patch = discriminator_blocks(PatchDiscriminator(shape, 4))
    assert [d for d, _ in patch][-1].startswith("net.") and len(patch) == len(PatchDiscriminator(shape, 4).net) // 2


def test_freeze_d_errors(source, tmp_path):
    with pytest.raises(
        ConfigError, match=r"^freeze_d=3: the DCGANDiscriminator has 2 blocks, so 1 to 2: 1: features.0"
    ):
        trainer(overrides=overrides("gan"), runs_dir=tmp_path, init_from=source("gan"), freeze_d=3)
    with pytest.raises(ConfigError, match=r"^freeze_d=-1: the DCGANDiscriminator has 2 blocks"):
        trainer(overrides=overrides("gan"), runs_dir=tmp_path, init_from=source("gan"), freeze_d=-1)
    with pytest.raises(ConfigError, match=r"^freeze_d=1: .* give init_from=RUN too"):
        trainer(overrides=overrides("gan"), runs_dir=tmp_path, freeze_d=1)
    assert list(tmp_path.iterdir()) == []


def test_cli_init_from_and_freeze_d(source, tmp_path, capsys):
    src = source("gan")
    assert (
        main(
            [
                "train",
                *overrides("gan", "train.steps=1"),
                "--runs-dir",
                str(tmp_path),
                "--init-from",
                str(src),
                "--freeze-d",
                "2",
            ]
        )
        == 0
    )
    run = tmp_path / capsys.readouterr().out.strip().splitlines()[-1]
    rec = json.loads((run / RECORD).read_text())
    assert rec["init_from"]["run"] == str(src.resolve()) and rec["freeze_d"]["blocks"] == 2
    assert (
        main(["train", *overrides("gan", "model.arch=mlp"), "--runs-dir", str(tmp_path), "--init-from", str(src)]) != 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "init_from: no tensor of" in err[0]
