"""The trainer contract: the hooks a task overrides (and nothing private of the loop), named random
streams that reproduce the seed offsets of earlier runs, and the shared keep-best mechanism."""

import inspect
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn

import ganforge
from ganforge import runs
from ganforge.data import ImageData
from ganforge.tasks import TASKS, get_task
from ganforge.training import distributed
from ganforge.training.loop import HOOKS, TrainingLoop, _legacy_best
from ganforge.training.streams import LEGACY_OFFSETS, generator, stream_seed

# ---- the hooks ------------------------------------------------------------------------------------


def _overridden(cls):
    """The names of TrainingLoop's methods (and properties) that ``cls`` or a base below TrainingLoop defines."""
    out = set()
    for base in cls.__mro__:
        if base is TrainingLoop or not issubclass(base, TrainingLoop):
            continue
        for name, v in vars(base).items():
            if name.startswith("__") or not hasattr(TrainingLoop, name):
                continue
            loop_attr = inspect.getattr_static(TrainingLoop, name)
            if callable(getattr(TrainingLoop, name)) or isinstance(loop_attr, property):
                out.add(name)
    return out


def test_the_hooks_are_few_and_documented():
    assert len(HOOKS) <= 8
    doc = TrainingLoop.__doc__
    for hook in HOOKS:
        assert callable(getattr(TrainingLoop, hook)) and f"``{hook}(" in doc, hook


@pytest.mark.parametrize("task", TASKS.names())
def test_trainers_override_only_the_hooks(task):
    trainer = get_task(task).trainer
    names = _overridden(trainer)
    assert not {n for n in names if n.startswith("_")}, f"{trainer.__name__} overrides private loop methods"
    assert names <= set(HOOKS), f"{trainer.__name__} overrides {sorted(names - set(HOOKS))}, not hooks"
    assert {"build", "train_step", "sample_grid"} <= names


def test_the_contract_test_notices_a_private_override():
    class Bad(TrainingLoop):
        def build(self):
            pass

        def _postfix(self, rec):
            return ""

        def snapshot(self):
            pass

        def own_helper(self):  # not the loop's: allowed
            pass

    assert _overridden(Bad) == {"build", "_postfix", "snapshot"}


# ---- named random streams -------------------------------------------------------------------------


OLD = {  # the offsets the code used before streams had names (train.seed + N)
    "batches": 1,
    "noise": 2,
    "samples": 3,
    "eval": 4,
    "samples_b": 4,
    "sample_masks": 4,
    "crops": 5,
    "masks": 5,
    "watermark": 5,
    "degrade": 6,
    "sample_degrade": 7,
    "batches_b": 11,
    "augment": 12,
    "pool_b": 13,
    "pool_a": 14,
    "select_a": 15,
    "select_b": 16,
}


@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_legacy_stream_names_keep_their_offsets(seed):
    assert LEGACY_OFFSETS == OLD
    assert stream_seed(7, "noise") == 9
    for name, n in OLD.items():
        assert stream_seed(seed, name) == seed + n, name
        a = generator(seed, name)
        assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=torch.Generator().manual_seed(seed + n)))


def test_a_new_stream_name_gets_a_stable_distinct_seed():
    s = stream_seed(0, "my-new-stream")
    assert s == stream_seed(0, "my-new-stream") == 6833121523011734560  # stable across runs and machines
    assert s != stream_seed(1, "my-new-stream") and s != stream_seed(0, "my-new-streams")
    assert s > 2**20 and all(abs(s - (seed + n)) > 2**20 for seed in range(100) for n in OLD.values())
    assert 0 <= s < 2**63


# ---- a tiny trainer with scripted evaluations -----------------------------------------------------


class Scored(TrainingLoop):
    """Evaluates to SCORES[step] after every step and keeps the lowest."""

    SCORES = {1: 5.0, 2: 3.0, 3: 4.0, 4: 2.0, 5: 2.5, 6: 9.0}

    def build(self):
        self.w = nn.Linear(2, 1)
        self.nets["generator"] = self.w
        self.optims["g"] = self.optimizer(self.w, self.cfg.g_optim)
        self.gen = self.rng("my-draws", save_as="my_gen")
        self.saved, self.kept = [], []

    def train_step(self):
        x = torch.randn(4, 2, generator=self.gen)
        loss = self.w(x).pow(2).mean()
        self.opt_step(loss)
        self.step += 1
        self.images_seen += 4
        return {"loss": loss.item()}

    def opt_step(self, loss):
        self.optims["g"].zero_grad()
        loss.backward()
        self.optims["g"].step()

    def sample_grid(self):
        return np.zeros((4, 4, 3), np.uint8)

    def evaluate(self):
        self.kept.append(self.keep_best("score", self.SCORES[self.step]))

    def save(self, name=None):  # records what is written (a test's spy, not a task)
        self.saved.append(name)
        return super().save(name)


def _cfg(*extra):
    return ganforge.resolve(
        None,
        [
            "task=gan",
            "train.batch_size=4",
            "train.progress=false",
            "train.tensorboard=false",
            "train.log_every=1",
            "train.sample_every=2",
            "train.checkpoint_every=2",
            "train.minutes=null",
            "train.keep_checkpoints=10",
            *extra,
        ],
    )


def _data():
    g = torch.Generator().manual_seed(0)
    return ImageData(torch.randint(0, 256, (16, 1, 4, 4), generator=g, dtype=torch.uint8), None, [], "noise", "test")


def test_keep_best_writes_best_only_on_improvement_and_survives_a_resume(tmp_path):
    lines = []
    tr = Scored(_cfg("train.steps=6"), runs_dir=tmp_path / "a", data=_data(), log=lines.append)
    run = tr.run()
    assert tr.kept == [True, True, False, True, False, False]
    assert [n for n in tr.saved if n == "best"] == ["best"] * 3  # steps 1, 2 and 4
    best = runs.open_checkpoint(run, "best")
    assert best.step == 4 and runs.load_state(best.folder)["best"]["value"] == 2.0
    assert "best score 2.00 (checkpoint 'best')" in lines[-1]
    # resumed from step 2: the best so far (3.0 at step 2) comes back from the checkpoint, so step 3's
    # 4.0 is not taken for an improvement and the run ends as the uninterrupted one
    half = shutil.copytree(run, tmp_path / "b" / run.name)
    for name in ("step-00000004", "step-00000006", "best"):
        shutil.rmtree(half / "checkpoints" / name)
    lines2 = []
    tr2 = Scored(_cfg("train.steps=6"), resume=half, data=_data(), log=lines2.append)
    tr2.run()
    assert tr2.kept == [False, True, False, False]
    assert runs.open_checkpoint(half, "best").step == 4
    full = runs.load_state(runs.open_checkpoint(run).folder)
    resumed = runs.load_state(runs.open_checkpoint(half).folder)
    assert full["best"] == resumed["best"] and torch.equal(full["my_gen"], resumed["my_gen"])
    assert lines2[-1].split("; ", 1)[1] == lines[-1].split("; ", 1)[1].replace(str(run), str(half))


def test_keep_best_ignores_non_finite_values_and_can_maximise(tmp_path):
    class Up(Scored):
        SCORES = {1: float("nan"), 2: 1.0, 3: 0.5, 4: 3.0}

        def evaluate(self):
            self.kept.append(self.keep_best("acc", self.SCORES[self.step], lower_is_better=False, label="accuracy"))

    lines = []
    tr = Up(_cfg("train.steps=4"), runs_dir=tmp_path, data=_data(), log=lines.append)
    tr.run()
    assert tr.kept == [False, True, False, True]
    assert "best accuracy 3.00 (checkpoint 'best')" in lines[-1]


def test_checkpoints_before_keep_best_resume_their_best():
    assert _legacy_best({"best_fid": 12.5})["value"] == 12.5  # translate's own key
    assert _legacy_best({"best_fid": float("inf")}) is None  # translate without translate.select
    assert _legacy_best({"evaluator": {"best_fid": 3.25, "last_kimg": 50}})["metric"] == "fid"  # the GAN evaluator's
    assert _legacy_best({"evaluator": {}}) is None and _legacy_best({}) is None


def test_saved_streams_are_per_rank_streams():
    """A stream checkpointed by the loop is reseeded per rank even when it is not an attribute."""

    class T:
        pass

    t = T()
    t.a = torch.Generator().manual_seed(1)
    hidden = torch.Generator().manual_seed(2)
    t._streams = {"a_state": t.a, "hidden_state": hidden}
    found = distributed.rank_generators(t)
    assert found["a"] is t.a and found["hidden_state"] is hidden and len(found) == 2
