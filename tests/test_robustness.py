"""What a newcomer and a crash hit (issue 10): budgets, checkpoints by time, resuming past damage,
leftovers of a kill, write errors, refused pickles, tampered configs, dry runs, preset bases."""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge import runs
from ganforge.api import load_generator, trainer
from ganforge.config import ConfigError, DataConfig
from ganforge.errors import RunError, WriteError
from ganforge.tasks import resolve

TINY = [
    "data.limit=64",
    "model.z_dim=8",
    "model.g_width=8",
    "model.d_width=8",
    "train.batch_size=16",
    "train.progress=false",
    "train.log_every=2",
    "train.sample_every=4",
    "train.checkpoint_every=2",
    "train.sample_count=8",
    "train.tensorboard=false",
    "eval.every_kimg=0",
]


def train(tmp_path, *extra, **kw):
    return ganforge.train(overrides=TINY + list(extra), runs_dir=tmp_path, **kw)


def steps(run):
    return [runs.step_of(p) for p in runs.list_checkpoints(run)]


# ---- budgets ---------------------------------------------------------------------------------


def test_a_budget_on_the_command_line_replaces_the_presets():
    cfg = resolve("default", ["train.steps=3000"])  # the default preset says minutes: 5
    assert cfg.train.steps == 3000 and cfg.train.minutes is None
    cfg = resolve("mnist-inpaint", ["train.minutes=2"])  # that preset says steps: 7500
    assert cfg.train.minutes == 2 and cfg.train.steps is None
    assert resolve("default", ["train.steps=10", "train.kimg=1"]).train.kimg == 1  # several given: first reached
    assert resolve("default").train.minutes == 5  # no budget given: the preset's


def test_cli_budget_override_is_the_budget(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ganforge", "train", *TINY, "train.steps=3", "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "done (3 steps)" in out.stderr
    assert runs.open_checkpoint(out.stdout.strip().splitlines()[-1]).step == 3


# ---- checkpoints by time; resuming past damage ---------------------------------------------


def test_checkpoints_are_written_by_time_as_well(tmp_path):
    run = train(
        tmp_path,
        "train.steps=5",
        "train.checkpoint_every=1000",
        "train.checkpoint_minutes=1e-9",
        "train.keep_checkpoints=10",
    )
    assert steps(run) == [1, 2, 3, 4, 5]


def test_resume_skips_a_damaged_newest_checkpoint(tmp_path):
    run = train(tmp_path, "train.steps=4", "watchdog.enabled=false")  # no `good` copy of step 4
    assert steps(run) == [2, 4]
    (runs.find_checkpoint(run) / "state.pt").write_bytes(b"truncated")  # the newest is damaged
    tr = trainer(resume=run, overrides=["train.steps=6"])
    assert tr.step == 2  # loaded the older one
    tr.run()
    log = (run / "log.txt").read_text()
    assert "skipped a damaged checkpoint: step-00000004: cannot read training state" in log
    assert "damaged or cut short" in log and "resumed from step-00000002" in log
    assert runs.open_checkpoint(run).step == 6


def test_resume_from_a_chosen_checkpoint(tmp_path):
    run = train(tmp_path, "train.steps=4")
    tr = trainer(resume=run, resume_from="2", overrides=["train.steps=6"])
    assert tr.step == 2
    with pytest.raises(RunError, match="no checkpoint at step 3; available: 2, 4"):
        trainer(resume=run, resume_from="3")


def test_a_crash_before_the_first_step_checkpoint_resumes_from_good(tmp_path):
    run = train(tmp_path, "train.steps=2", "train.checkpoint_every=1000")
    for p in runs.list_checkpoints(run):  # as if the run died before its first step checkpoint
        shutil.rmtree(p)
    assert (run / "checkpoints" / "good" / "meta.json").is_file()
    ganforge.train(resume=run, overrides=["train.steps=3"])
    assert runs.open_checkpoint(run).step == 3


def test_no_checkpoint_at_all_is_a_clear_error(tmp_path):
    run = train(tmp_path, "train.steps=2", "train.checkpoint_every=1000", "watchdog.enabled=false")
    for p in runs.list_checkpoints(run):
        shutil.rmtree(p)
    with pytest.raises(RunError, match="has no complete checkpoint to resume from"):
        ganforge.train(resume=run)


# ---- leftovers of a kill -------------------------------------------------------------------


def test_pruning_renames_before_deleting(tmp_path, monkeypatch):
    run = train(tmp_path, "train.steps=4", "train.keep_checkpoints=2")
    real_rmtree = shutil.rmtree

    def killed(path, *a, **k):  # the process dies in the middle of deleting
        p = Path(path)
        if p.name.startswith(".trash-"):
            next(iter(p.iterdir())).unlink()
            raise KeyboardInterrupt
        return real_rmtree(path, *a, **k)

    monkeypatch.setattr(runs.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        runs.prune_checkpoints(run, 1)
    monkeypatch.undo()
    assert steps(run) == [4]  # no half-deleted step-* folder is taken for a checkpoint
    assert any(p.name.startswith(".trash-step-00000002") for p in (run / "checkpoints").iterdir())
    assert "removed .trash-step-00000002" in " ".join(runs.recover(run))
    assert not any(p.name.startswith(".") for p in (run / "checkpoints").iterdir())


@pytest.mark.parametrize("left", [("tmp", "old"), ("old",), ("tmp",)])
def test_a_kill_between_the_renames_of_good_is_repaired(tmp_path, left):
    run = train(tmp_path, "train.steps=2")
    ck = run / "checkpoints"
    good = ck / "good"
    if "tmp" in left:
        shutil.copytree(good, ck / ".tmp-good-123")
    if "old" in left:
        shutil.copytree(good, ck / ".old-good-123")
    shutil.rmtree(good)  # killed after the first rename, before the second
    trainer(resume=run, overrides=["train.steps=3"])
    assert (good / "meta.json").is_file()
    assert "restored checkpoints/good" in (run / "log.txt").read_text()
    assert not any(p.name.startswith(".") for p in ck.iterdir())


# ---- data.skip_bad ---------------------------------------------------------------------------


def test_a_skipped_colour_file_does_not_decide_the_channels(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(20):
        Image.fromarray(np.full((16, 16), i * 10, np.uint8), "L").save(root / f"g{i:02d}.png")
    colour = root / "zz-colour.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8) + 50, "RGB").save(colour)
    colour.write_bytes(colour.read_bytes()[:-30])  # a readable header, a truncated body
    from ganforge.data import load_dataset

    data = load_dataset(DataConfig(dataset="folder", root=str(root), skip_bad=True))
    assert data.images.shape == (20, 1, 16, 16)
    assert [Path(p).name for p in data.skipped] == ["zz-colour.png"]
    run = ganforge.train(
        overrides=[
            "data.dataset=folder",
            f"data.root={root}",
            "data.skip_bad=true",
            "train.steps=1",
            "train.batch_size=4",
            "train.progress=false",
            "train.tensorboard=false",
            "eval.every_kimg=0",
            "model.z_dim=4",
            "model.g_width=4",
            "model.d_width=4",
        ],
        runs_dir=tmp_path / "runs",
    )
    assert "skipped 1 unreadable image file(s)" in (run / "log.txt").read_text()


# ---- the dry run checks what the run checks ------------------------------------------------------


def test_dry_run_refuses_what_the_run_refuses(tmp_path, monkeypatch):
    from ganforge.metrics.inception_weights import find_inception_weights

    if find_inception_weights() is not None:
        pytest.skip("Inception weights are installed here")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    o = TINY + ["eval.features=inception", "eval.every_kimg=1"]
    with pytest.raises(ConfigError, match="eval.features=inception: Inception weights are not available"):
        trainer(overrides=o, dry_run=True)
    with pytest.raises(ConfigError, match="eval.features=inception: Inception weights are not available"):
        trainer(overrides=o, runs_dir=tmp_path)


# ---- messages -------------------------------------------------------------------------------


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_state_file_that_could_run_code_is_refused_plainly(tmp_path):
    run = train(tmp_path, "train.steps=2")
    state = runs.find_checkpoint(run) / "state.pt"
    with open(state, "wb") as f:
        pickle.dump({"step": _RunsCode()}, f)
    with pytest.raises(RunError) as e:
        runs.load_state(state.parent)
    msg = str(e.value)
    assert "refused to load" in msg and "could run code" in msg
    assert "weights_only=False" not in msg and "\n" not in msg


def test_a_tampered_config_json_is_one_line(tmp_path):
    run = train(tmp_path, "train.steps=2")
    cj = runs.find_checkpoint(run) / "config.json"
    d = json.loads(cj.read_text())
    d["config"]["model"]["g_width"] = 16
    cj.write_text(json.dumps(d))
    with pytest.raises(RunError) as e:
        load_generator(run)
    msg = str(e.value)
    assert (
        "\n" not in msg and "has shape" in msg and "the network expects" in msg and "generator_ema.safetensors" in msg
    )


def test_conditional_and_unconditional_runs_are_named_apart(tmp_path):
    a = train(tmp_path, "train.steps=1")
    b = train(tmp_path, "train.steps=1", "model.conditional=true")
    assert a.name.endswith("-mnist-dcgan") and b.name.endswith("-mnist-dcgan-cond")


def test_a_yaml_preset_can_name_its_base(tmp_path):
    (tmp_path / "mine.yaml").write_text("base: default\ntrain:\n  steps: 7\n")
    cfg = resolve(str(tmp_path / "mine.yaml"))
    assert (
        cfg.model.z_dim == 16 and cfg.model.conditional == "auto" and cfg.train.threads == 1
    )  # from the default preset
    assert cfg.train.steps == 7 and cfg.train.minutes is None  # its own budget replaces the base's
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="name each other in a loop"):
        resolve(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("base: nope\n")
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        resolve(str(tmp_path / "c.yaml"))
    assert resolve(None).model.z_dim == 100  # without a base: the dataclass defaults


# ---- a full disk -------------------------------------------------------------------------------


def test_a_full_disk_during_training_is_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    run = train(tmp_path, "train.steps=2")
    before = runs.open_checkpoint(run).step

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(runs.torch, "save", full)
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(WriteError) as e:
        ganforge.train(resume=run, overrides=["train.steps=6"])
    msg = str(e.value)
    assert "the disk is full" in msg and "\n" not in msg and "ganforge train --resume" in msg
    monkeypatch.undo()
    assert runs.open_checkpoint(run).step == before
    ganforge.train(resume=run, overrides=["train.steps=4"])  # and it resumes once there is room
    assert runs.open_checkpoint(run).step == 4


def test_a_failing_log_write_is_one_line(tmp_path, monkeypatch):
    run = train(tmp_path, "train.steps=2")
    from ganforge.training import monitor

    def nospace(self, rec):
        raise OSError(28, "No space left on device", str(self.path))

    monkeypatch.setattr(monitor.MetricsLog, "append", nospace)
    with pytest.raises(
        WriteError, match=r"cannot write to the run folder .*the disk is full.*continue from step-00000002"
    ):
        ganforge.train(resume=run, overrides=["train.steps=6"])


# ---- damaged metrics, folder modes, the image size policy (issue 30) -----------------------------------


def test_read_metrics_skips_damaged_lines_with_one_warning(tmp_path):
    (tmp_path / "metrics.jsonl").write_bytes(
        b'{"step": 1}\n\xff\xfe\n42\n"text"\nnot json\n{"step": 2}\n\n{"step": 3, "cut'
    )
    with pytest.warns(RuntimeWarning, match=r"skipped 4 damaged line\(s\), e.g. line 2: not UTF-8 text") as w:
        assert runs.read_metrics(tmp_path) == [{"step": 1}, {"step": 2}]
    assert len(w) == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per file: the second read is silent
        assert runs.read_metrics(tmp_path) == [{"step": 1}, {"step": 2}]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "cut')  # being written: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runs.read_metrics(tmp_path / "other") == [{"step": 1}]
    assert runs.read_metrics(tmp_path / "none") == []


def test_resuming_over_a_damaged_metrics_file_keeps_its_good_lines(tmp_path):
    run = train(tmp_path, "train.steps=2")
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b"\xff\n42\n")
    with pytest.warns(RuntimeWarning, match="damaged line"):
        ganforge.train(resume=run, overrides=["train.steps=4"])
    recs = runs.read_metrics(run)  # the damaged lines are gone: the log was rewritten from the good ones
    assert [r["step"] for r in recs if "loss_d" in r] == [2, 4]


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory):
    """A one-step run of each task with a folder mode (superres, translate, inpaint, watermark)."""
    from ganforge.tasks import get_task

    root = tmp_path_factory.mktemp("folder-runs")
    common = [
        "data.limit=32",
        "train.batch_size=8",
        "train.progress=false",
        "train.tensorboard=false",
        "train.sample_every=2",
        "train.checkpoint_every=2",
        "train.sample_count=4",
        "train.minutes=null",
        "train.steps=1",
    ]
    return {
        t: ganforge.train(overrides=[f"task={t}", *common, *get_task(t).tiny], runs_dir=root)
        for t in ("superres", "translate", "inpaint", "watermark")
    }


def _folder_with_bad_files(folder):
    """Two good 32x32 grey images and two unusable files: a truncated PNG, a text file named .jpg."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "c"):
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(folder / f"{name}.png")
    data = (folder / "a.png").read_bytes()
    (folder / "b.png").write_bytes(data[: len(data) // 2])
    (folder / "d.jpg").write_text("not an image")
    return folder


FOLDER_VERBS = {  # verb: (task, extra arguments, what the summary line says)
    "upscale": ("superres", [], "upscaled 2 image(s)"),
    "translate": ("translate", [], "translated 2 image(s)"),
    "inpaint": ("inpaint", ["--box", "4,4,8,8"], "completed 2 image(s)"),
    "watermark embed": ("watermark", ["--message", "x"], "marked 2 image(s)"),
    "watermark detect": ("watermark", ["--key", "x"], "0 of 2 image(s) carry the key"),
    "watermark extract": ("watermark", [], None),
}


@pytest.mark.parametrize("verb", FOLDER_VERBS)
def test_folder_modes_stop_before_writing_or_skip_bad_files(verb, task_runs, tmp_path, capsys):
    """Without --skip-bad an unreadable file is an error before anything is written; with it the bad files
    are skipped, each named with its reason on standard error, and the others processed."""
    from ganforge.cli import main

    task, extra, summary = FOLDER_VERBS[verb]
    images = _folder_with_bad_files(tmp_path / "in")
    writes = verb.split()[-1] in ("upscale", "translate", "inpaint", "embed")
    out = ["--out", str(tmp_path / "out")] if writes else []
    argv = [*verb.split(), str(images), "--model", str(task_runs[task]), *extra, *out]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot read image '{images / 'b.png'}': "), err
    assert "(no image was processed; --skip-bad / skip_bad=True skips unusable ones)" in err[0]
    assert not (tmp_path / "out").exists()
    assert main([*argv, "--skip-bad"]) == 0
    cap = capsys.readouterr()
    skipped = [ln for ln in cap.err.splitlines() if ln.startswith("skipped: ")]
    assert len(skipped) == 2 and f"'{images / 'b.png'}'" in skipped[0] and f"'{images / 'd.jpg'}'" in skipped[1]
    if summary:
        assert f"{summary}" in cap.err and "2 unusable image(s) skipped" in cap.err
    if writes:
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
    else:
        read = [ln.split(":")[0] for ln in cap.out.strip().splitlines()]
        assert read == [str(images / "a.png"), str(images / "c.png")]


def test_folder_functions_return_what_they_skipped(task_runs, tmp_path):
    from ganforge.imaging import Skipped
    from ganforge.tasks.inpaint.app import inpaint_folder
    from ganforge.tasks.superres.app import upscale_folder
    from ganforge.tasks.translate.app import translate_folder
    from ganforge.tasks.watermark.app import embed_folder, read_folder

    images = _folder_with_bad_files(tmp_path / "in")
    results = {
        "upscale": upscale_folder(task_runs["superres"], images, tmp_path / "u", skip_bad=True),
        "translate": translate_folder(task_runs["translate"], images, tmp_path / "t", skip_bad=True),
        "inpaint": inpaint_folder(task_runs["inpaint"], images, None, tmp_path / "i", box=(4, 4, 8, 8), skip_bad=True),
        "embed": embed_folder(task_runs["watermark"], images, tmp_path / "e", "x", skip_bad=True),
        "read": read_folder(task_runs["watermark"], images, skip_bad=True),
    }
    for name, res in results.items():
        assert len(res) == 2, name
        assert [s.path for s in res.skipped] == [images / "b.png", images / "d.jpg"], name
        assert all(isinstance(s, Skipped) and "cannot read image" in s.reason for s in res.skipped), name
    assert upscale_folder(task_runs["superres"], tmp_path / "t", tmp_path / "u2").skipped == []
    with pytest.raises(ganforge.errors.UpscaleError, match="no image was processed"):
        upscale_folder(task_runs["superres"], images, tmp_path / "u3")
    assert not (tmp_path / "u3").exists()
    (images / "a.png").unlink(), (images / "c.png").unlink()
    with pytest.raises(ganforge.errors.ImageError, match=r"no usable image in .*: all 2 skipped, e.g. cannot read"):
        embed_folder(task_runs["watermark"], images, tmp_path / "e2", "x", skip_bad=True)


def test_one_image_size_policy_for_every_reader(tmp_path, monkeypatch):
    """load_image refuses an image of more than MAX_PIXELS pixels (read from its header, before decoding)
    in one line that says how to allow it; GANFORGE_MAX_PIXELS changes the limit; the web app uses the
    same number."""
    import warnings

    from ganforge.errors import ImageError
    from ganforge.imaging import MAX_PIXELS, MAX_PIXELS_ENV, load_image, max_pixels
    from ganforge.web.core import Limits

    assert MAX_PIXELS == 16_000_000 and max_pixels() == MAX_PIXELS == Limits().max_pixels
    Image.new("L", (4100, 4000)).save(tmp_path / "big.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor PIL's DecompressionBombWarning
        with pytest.raises(ImageError) as e:
            load_image(tmp_path / "big.png")
    assert str(e.value) == (
        f"image '{tmp_path / 'big.png'}' is 4100x4000 (16,400,000 pixels), more than the limit of 16,000,000 "
        f"pixels; set GANFORGE_MAX_PIXELS=16400000 (or more) to read it"
    )
    monkeypatch.setenv(MAX_PIXELS_ENV, "16_400_000")
    assert load_image(tmp_path / "big.png").size == (4100, 4000) and Limits().max_pixels == 16_400_000
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with pytest.raises(ImageError, match="more than the limit of 1,000 pixels"):
        load_image(tmp_path / "big.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "many")
    with pytest.raises(ImageError, match="GANFORGE_MAX_PIXELS='many': expected a positive number of pixels"):
        load_image(tmp_path / "big.png")


def test_the_cli_refuses_an_image_over_the_limit_in_one_line(task_runs, tmp_path, capsys, monkeypatch):
    from ganforge.cli import main

    monkeypatch.setenv("GANFORGE_MAX_PIXELS", "900")
    Image.new("L", (32, 32)).save(tmp_path / "in.png")
    argv = ["watermark", "embed", str(tmp_path / "in.png"), "--model", str(task_runs["watermark"])]
    assert main([*argv, "--message", "x", "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: image '{tmp_path / 'in.png'}' is 32x32 (1,024 pixels), more than the limit of 900 pixels; "
        "set GANFORGE_MAX_PIXELS=1024 (or more) to read it"
    ]
    assert not (tmp_path / "o.png").exists()
