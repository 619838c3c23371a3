"""Training in several processes: 2 ranks on the CPU with gloo, started with torch.multiprocessing (one
start runs every 2-rank scenario, so the processes start once), plus one real ``torchrun`` of the CLI.

What is checked: weights bit-identical across ranks; 2 ranks x 32 == 1 process x 64 on the same samples
(BatchNorm-free GAN, the noise drawn for the global batch and sliced); resume 2 -> 2 exact, 2 -> 1 and 1 -> 2
continuing counters, optimiser state and budgets; rank 0 the only writer; SIGTERM on one rank stopping both at
the same step with a checkpoint; another task (translate, CycleGAN: its own Batcher for domain B, a history
pool) under 2 ranks; clusters of unlabelled data made on rank 0 and shared; the gathered in-training FID equal
to one process's; the ``train`` verb as ``torchrun ... -m ganforge train`` runs it in each process: the run
folder printed once, status 0, the process group left cleanly (a real ``torchrun`` costs ~20 s of CPU to start
three Pythons; the README's section gives the command, measured by hand: see benchmarks/distributed_speed.py).
"""

import os
import shutil
import signal
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import ganforge
from ganforge import runs
from ganforge.api import trainer
from ganforge.errors import ConfigError
from ganforge.tasks import get_task, resolve
from ganforge.tasks.gan.networks import draw_z
from ganforge.tasks.gan.trainer import GanTrainer
from ganforge.training import distributed
from ganforge.training.parts import Batcher

WORLD = 2
COMMON = [
    "data.limit=128",
    "train.progress=false",
    "train.tensorboard=false",
    "train.log_every=1",
    "train.sample_every=100",
    "train.checkpoint_every=2",
    "train.sample_count=8",
    "train.minutes=null",
]
GAN = ["task=gan", *COMMON, *get_task("gan").tiny, "train.batch_size=16", "watchdog.enabled=false"]
# BatchNorm-free, no random flips or augmentation: the only randomness is the data order and z
EQUIV = [
    "task=gan",
    *COMMON,
    *get_task("gan").tiny,
    "model.g_norm=none",
    "model.d_norm=none",
    "data.hflip=false",
    "train.ema_decay=0",
    "train.steps=3",
    "watchdog.enabled=false",
]
# unlabelled (labels hidden) with model.conditional=auto: clusters of D's features, re-clustered every 2 steps
CLUSTERS = [
    "model.conditional=auto",
    "data.labels=false",
    "model.cluster_features=discriminator",
    "model.recluster_every=2",
]
CYCLE = [
    "task=translate",
    *COMMON,
    *get_task("translate").tiny,
    "translate.method=cyclegan",
    "train.batch_size=8",
    "translate.pool_size=4",
    "train.steps=3",
]


class GlobalNoiseGan(GanTrainer):
    """The GAN trainer drawing each step's z for the global batch from one shared stream and keeping this
    rank's slice, so 2 ranks x B see exactly the samples 1 process x 2B sees."""

    def build(self):
        super().build()
        self._shared = {"gen": torch.Generator().manual_seed(123)}  # in a dict: not a per-rank stream

    def _z(self, n):
        z = draw_z(n * self.world, self.cfg.model.z_dim, self.cfg.model.z_dist, self._shared["gen"])
        return z[self.rank * n : (self.rank + 1) * n].to(self.device)


class TermOnRank1(GanTrainer):
    """Sends itself SIGTERM on rank 1 during step 3."""

    def train_step(self):
        stats = super().train_step()
        if self.rank == 1 and self.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return stats


def weights_of(tr):
    return {f"{k}.{n}": v.detach().clone() for k, net in tr.nets.items() for n, v in net.state_dict().items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the 2-rank scenarios (run in each spawned process) ---------------------------------------


def _scenarios(rank: int, tmp: Path) -> dict:
    out = {}
    # 1. a GAN run of 4 steps: weights per rank, for the bit-identity and the writer checks
    tr = trainer(overrides=GAN + ["train.steps=4"], runs_dir=tmp / "gan2")
    run_a = tr.run()
    out["gan2"] = {"run": str(run_a), "weights": weights_of(tr), "rank": tr.rank, "world": tr.world}
    # 2. resume 2 -> 2 from step 2 (a copy of run A with its step-4 checkpoint removed) must end where run A ends
    if rank == 0:
        shutil.copytree(run_a, tmp / "gan2-from2")
        shutil.rmtree(tmp / "gan2-from2" / "checkpoints" / "step-00000004")
    distributed.barrier()
    tr = trainer(resume=tmp / "gan2-from2", overrides=["train.steps=4"])
    out["resumed_at"] = tr.step
    tr.run()
    out["resume22"] = weights_of(tr)
    # 3. resume 1 -> 2: a one-process run (made by the test before spawning) continued to step 6 by 2 ranks
    tr = trainer(resume=tmp / "one" / os.listdir(tmp / "one")[0], overrides=["train.steps=6"])
    out["resume12_start"] = (tr.step, tr.images_seen)
    tr.run()
    out["resume12"] = {
        "step": tr.step,
        "images_seen": tr.images_seen,
        "adam_steps": {
            k: [float(s["step"]) for s in o.state_dict()["state"].values()][:1] for k, o in tr.optims.items()
        },
    }
    # 4. equivalence: 2 x 32 with global noise
    tr = GlobalNoiseGan(resolve(None, EQUIV + ["train.batch_size=32"]), runs_dir=tmp / "equiv2", log=lambda m: None)
    tr.run()
    out["equiv"] = weights_of(tr)
    # 5. SIGTERM on rank 1 at step 3: both stop at the same step with a checkpoint
    #    (with train.sync_bn=true, which on the CPU says what it does instead)
    msgs = []
    tr = TermOnRank1(
        resolve(None, GAN + ["train.steps=1000", "train.sync_bn=true"]), runs_dir=tmp / "term", log=msgs.append
    )
    try:
        tr.run()
        out["term"] = None
    except KeyboardInterrupt:
        out["term"] = {"step": tr.step, "run": str(tr.run_dir)}
    out["term_log"] = msgs
    # 6. another task: CycleGAN (own Batcher for domain B, history pool, per-rank streams)
    tr = trainer(overrides=CYCLE, runs_dir=tmp / "cycle2")
    tr.run()
    out["cycle"] = {"weights": weights_of(tr), "run": str(tr.run_dir)}
    # 7. the gathered in-training FID of the same samples
    out["fid"] = _fid()
    # 7b. unlabelled data on clusters of the discriminator's features, re-clustered at step 2: rank 0 clusters
    #     and broadcasts, so every rank trains on the same pseudo-labels
    tr = trainer(overrides=GAN + CLUSTERS + ["train.steps=4"], runs_dir=tmp / "clusters2")
    tr.run()
    c = tr.clusters
    out["clusters"] = {"labels": c.labels, "gen": c.gen.get_state(), "count": c.count, "weights": weights_of(tr)}
    # 8. last (it leaves the process group): the CLI verb, as torchrun runs it in each process
    import contextlib
    import io

    from ganforge.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["train", *GAN, "train.steps=2", "--runs-dir", str(tmp / "cli")])
    out["cli"] = {"code": code, "stdout": buf.getvalue(), "left_group": not torch.distributed.is_initialized()}
    return out


def _fid() -> float:
    """FID (mnist features) of 40 MNIST images against 80 others."""
    from ganforge.data import load_dataset
    from ganforge.metrics.training import TrainingEvaluator

    images = load_dataset(resolve(None, GAN).data).images
    ev = TrainingEvaluator(images[40:120], features="mnist", num_samples=40, seed=0)
    return ev(lambda n: images[:n])["fid"]


def _worker(rank: int, port: int, tmp: str):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD)
    )
    torch.set_num_threads(1)
    tmp = Path(tmp)
    out = _scenarios(rank, tmp)
    torch.save(out, tmp / f"rank{rank}.pt")
    distributed.shutdown()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Run every 2-rank scenario once; returns (folder, [rank 0's results, rank 1's])."""
    tmp = tmp_path_factory.mktemp("ddp")
    ganforge.train(overrides=GAN + ["train.steps=4"], runs_dir=tmp / "one")  # for resume 1 -> 2
    # fork: the children start with torch and ganforge already imported (spawn re-imports: ~10 s of CPU each);
    # they run one thread each, so no OpenMP pool is used after the fork (checked after 2-thread work in the parent)
    mp.start_processes(_worker, args=(free_port(), str(tmp)), nprocs=WORLD, start_method="fork", join=True)
    return tmp, [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def assert_same(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        if atol:
            assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (k, (a[k] - b[k]).abs().max().item())
        else:
            assert torch.equal(a[k], b[k]), k


# ---- the tests ---------------------------------------------------------------------------------


def test_batcher_shards_one_global_order():
    full = Batcher(100, 32, seed=5)
    got = [full.next() for _ in range(5)]  # crosses an epoch (3 batches of 32 per epoch)
    shards = []
    for r in range(2):
        b = Batcher(100, 16, seed=5)
        b.world, b.rank, b.global_batch = 2, r, 32  # what distributed.world_size()/rank() give under torchrun
        shards.append([b.next() for _ in range(5)])
    for i in range(5):
        assert torch.equal(torch.cat([shards[0][i], shards[1][i]]), got[i])
        assert not set(shards[0][i].tolist()) & set(shards[1][i].tolist())


def test_a_global_batch_larger_than_the_data_is_one_line(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(ConfigError) as e:
        Batcher(50, 32, seed=0)
    assert str(e.value) == (
        "train.batch_size=32 x 2 processes = 64 images per step is larger than the dataset (50 images)"
    )


def test_weights_are_bit_identical_across_ranks(two_ranks):
    _, (r0, r1) = two_ranks
    assert (r0["gan2"]["rank"], r1["gan2"]["rank"], r0["gan2"]["world"]) == (0, 1, 2)
    assert_same(r0["gan2"]["weights"], r1["gan2"]["weights"])  # BatchNorm statistics included (averaged)
    assert_same(r0["cycle"]["weights"], r1["cycle"]["weights"])  # another task, with no code for it


def test_rank_0_is_the_only_writer(two_ranks):
    tmp, (r0, r1) = two_ranks
    assert r0["gan2"]["run"] == r1["gan2"]["run"]
    assert len(list((tmp / "gan2").iterdir())) == 1  # one run folder
    run = Path(r0["gan2"]["run"])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    recs = runs.read_metrics(run)
    assert [r["step"] for r in recs if "loss_d" in r] == [1, 2, 3, 4]  # one line per step, not one per rank
    assert recs[-1]["kimg"] == 4 * 32 / 1000  # images of both ranks
    log = (run / "log.txt").read_text()
    assert log.count("done (4 steps)") == 1
    assert "2 processes (gloo): batch 16 per process, 32 per step in all" in log
    state = runs.load_state(runs.find_checkpoint(run))
    assert state["world_size"] == 2 and len(state["rank_states"]) == 1 and state["images_seen"] == 128
    assert len(list((tmp / "cycle2").iterdir())) == 1


def test_two_ranks_of_32_equal_one_process_of_64(two_ranks, tmp_path):
    _, (r0, r1) = two_ranks
    tr = GlobalNoiseGan(resolve(None, EQUIV + ["train.batch_size=64"]), runs_dir=tmp_path, log=lambda m: None)
    tr.run()
    assert_same(r0["equiv"], r1["equiv"])
    assert_same(weights_of(tr), r0["equiv"], atol=1e-5)


def test_resume_with_as_many_ranks_is_exact(two_ranks):
    _, (r0, r1) = two_ranks
    assert r0["resumed_at"] == 2
    assert_same(r0["resume22"], r0["gan2"]["weights"])
    assert_same(r1["resume22"], r1["gan2"]["weights"])


def test_resume_one_to_two_continues_counters_and_optimisers(two_ranks):
    _, (r0, r1) = two_ranks
    assert r0["resume12_start"] == (4, 64)  # 4 steps of 16 in one process
    assert r0["resume12"] == r1["resume12"]
    assert r0["resume12"]["step"] == 6 and r0["resume12"]["images_seen"] == 64 + 2 * 32
    assert r0["resume12"]["adam_steps"] == {"g": [6.0], "d": [6.0]}


def test_resume_two_to_one_continues_counters_optimisers_and_budgets(two_ranks, tmp_path):
    tmp, (r0, _) = two_ranks
    run = tmp_path / "run"
    shutil.copytree(r0["gan2"]["run"], run)
    before = runs.load_state(runs.find_checkpoint(run))
    tr = trainer(resume=run, overrides=["train.kimg=0.16"])  # 128 images so far + 2 steps of 16
    assert (tr.step, tr.images_seen, tr.world) == (4, 128, 1)
    tr.run()
    assert (tr.step, tr.images_seen) == (6, 160)
    after = runs.load_state(runs.find_checkpoint(run))
    assert after["world_size"] == 1 and after["elapsed"] >= before["elapsed"]
    assert [s["step"].item() for s in after["opt_g"]["state"].values()][0] == 6
    log = (run / "log.txt").read_text()
    assert "written by 2 process(es), this run has 1" in log and "done (0.16 kimg) at step 6" in log


def test_sigterm_on_one_rank_stops_both_with_a_checkpoint(two_ranks):
    _, (r0, r1) = two_ranks
    assert r0["term"] is not None and r0["term"] == r1["term"]
    assert r0["term"]["step"] == 3
    assert runs.open_checkpoint(r0["term"]["run"]).step == 3
    assert any(m.startswith("train.sync_bn=true: SyncBatchNorm runs on CUDA only") for m in r0["term_log"])
    assert any("interrupted at step 3" in m for m in r0["term_log"]) and r1["term_log"] == []  # rank 0 logs


def test_clusters_are_made_once_and_shared(two_ranks):
    _, (r0, r1) = two_ranks
    a, b = r0["clusters"], r1["clusters"]
    assert a["count"] == b["count"] == 2  # steps 0 and 2
    assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["gen"], b["gen"])
    assert a["labels"].shape == (128,) and len(set(a["labels"].tolist())) > 1
    assert_same(a["weights"], b["weights"])


def test_gathered_fid_equals_one_process(two_ranks):
    _, (r0, r1) = two_ranks
    one = _fid()  # the same samples in this one process
    assert r0["fid"] == r1["fid"]
    assert r0["fid"] == pytest.approx(one, rel=1e-5)


def test_the_cli_prints_the_run_once_and_leaves_cleanly(two_ranks):
    # the processes exited with status 0 (start_processes raises otherwise) after the CLI left the group
    tmp, (r0, r1) = two_ranks
    assert r0["cli"]["code"] == r1["cli"]["code"] == 0
    assert r0["cli"]["left_group"] and r1["cli"]["left_group"]
    assert r1["cli"]["stdout"] == ""  # only rank 0 prints the run folder
    (run,) = list((tmp / "cli").iterdir())
    assert r0["cli"]["stdout"] == f"{run}\n" and runs.open_checkpoint(run).step == 2
