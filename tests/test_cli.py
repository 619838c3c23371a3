"""The command line as a user meets it: outputs, exit codes, and one-line errors."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ganforge import runs
from ganforge.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from tests.conftest import TINY

    runs_dir = tmp_path_factory.mktemp("runs")
    assert main(["train", *TINY, "train.steps=4", "--runs-dir", str(runs_dir)]) == 0
    return next(runs_dir.iterdir())


def test_train_prints_run_folder_last(tmp_path, tiny_overrides, capsys):
    assert main(["train", "default", *tiny_overrides, "train.steps=2", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(tmp_path / "00000-mnist-dcgan-cond")  # the default preset uses the labels


def test_overrides_may_follow_options(tmp_path, tiny_overrides, capsys):
    assert main(["train", "--runs-dir", str(tmp_path), *tiny_overrides, "--minutes", "1", "train.steps=1"]) == 0
    assert (tmp_path / "00000-mnist-dcgan-cond" / "checkpoints" / "step-00000001").is_dir()


def test_dry_run_prints_config_and_writes_nothing(tmp_path, tiny_overrides, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *tiny_overrides, "--dry-run"]) == 0
    cap = capsys.readouterr()
    assert "batch_size: 16" in cap.out and "dry run: one step OK" in cap.err
    assert list(tmp_path.iterdir()) == []


def test_sample_png_folder_npz(run_dir, tmp_path, capsys):
    assert main(["sample", str(run_dir), "--n", "10", "--seed", "1", "--out", str(tmp_path / "g.png")]) == 0
    im = Image.open(tmp_path / "g.png")
    assert im.mode == "L" and im.size == (4 * 30 + 2, 3 * 30 + 2)  # 10 images of 28 px in a 4-wide grid, 2 px padding
    assert main(["sample", str(run_dir), "--n", "3", "--out", str(tmp_path / "many")]) == 0
    # the default preset trains a class-conditional model on MNIST: the classes in turn, named in the files
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["000000_0.png", "000001_1.png", "000002_2.png"]
    assert main(["sample", str(run_dir), "--n", "6", "--seed", "1", "--out", str(tmp_path / "s.npz")]) == 0
    arr = np.load(tmp_path / "s.npz")["arr_0"]
    assert arr.dtype == np.uint8 and arr.shape == (6, 28, 28, 1)
    # the same seed gives the same first images in every form
    first = np.asarray(Image.open(tmp_path / "g.png"))[2:30, 2:30]
    assert np.array_equal(first, arr[0, :, :, 0])


def test_interpolate_and_info(run_dir, tmp_path, capsys):
    assert main(["interpolate", str(run_dir), "--rows", "2", "--steps", "5", "--out", str(tmp_path / "i.png")]) == 0
    assert Image.open(tmp_path / "i.png").size == (5 * 30 + 2, 2 * 30 + 2)
    assert main(["interpolate", str(run_dir), "--rows", "2", "--steps", "3", "--out", str(tmp_path / "i.gif")]) == 0
    assert Image.open(tmp_path / "i.gif").n_frames == 4  # 3 there, 1 back (endpoints once)
    capsys.readouterr()
    assert main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "dcgan" in out and "step        4" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "train.bogus=1"], "unknown config key 'train.bogus'; allowed keys in 'train': "),
        (["train", "train.batch_size=-3"], "train.batch_size: expected a positive number, got -3"),
        (["train", "data.size=30", "train.steps=1"], "dcgan cannot be built for 30x30"),
        (["train", "nosuchpreset"], "unknown preset 'nosuchpreset'"),
        (["train", "data.dataset=folder", "data.root=/no/such/folder"], "/no/such/folder"),
        (["sample", "/no/such/run", "--out", "x.png"], "run folder '/no/such/run' does not exist"),
        (["train", "--resume", "."], "is not a ganforge run folder"),
    ],
)
def test_errors_are_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        [],
        ["train", "--help"],
        ["sample", "--help"],
        ["sample"],
        ["sample", "RUN"],
        ["interpolate", "RUN", "--bogus"],
        ["info"],
        ["presets", "--help"],
        ["nosuchverb"],
        ["config", "--help"],
        ["eval", "--help"],
        ["inpaint", "--help"],
        ["sample", "RUN", "--out", "x.png", "--threads", "two"],
    ],
)
def test_parsing_does_not_import_torch(argv):
    """Help texts and argument errors come at once: torch (seconds to import) is loaded only to run a verb."""
    code = (
        "import sys\nfrom ganforge.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_json_info_and_old_run_folder(tmp_path, capsys):
    """A run folder written by an older ganforge (tests/fixtures/v0-gan-run) still samples, walks and describes."""
    import json
    import shutil
    from pathlib import Path

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "fixtures" / "v0-gan-run", run)
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["run"] == str(run) and info["model"]["arch"] == "dcgan" and info["best"] is None
    assert [c["step"] for c in info["checkpoints"]] == [4] and info["last_metrics"]["step"] == 4
    assert main(["sample", str(run), "--class", "all", "--n", "2", "--out", str(tmp_path / "s.npz")]) == 0
    z = np.load(tmp_path / "s.npz")
    assert z["arr_0"].shape == (20, 28, 28, 1) and list(z["arr_1"]) == [c for c in range(10) for _ in range(2)]
    assert main(["interpolate", str(run), "--rows", "2", "--steps", "3"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run / "interpolation.png")


def test_sample_rejects_unknown_output_kind(run_dir, tmp_path, capsys):
    assert main(["sample", str(run_dir), "--out", str(tmp_path / "x.jpg")]) == 2
    assert "expected a .png file (grid), a .npz file, or a folder" in capsys.readouterr().err


def test_ctrl_c_writes_checkpoint_and_resumes(tmp_path, tiny_overrides):
    """SIGINT mid-run: a checkpoint at the current step, exit code 130, run path last on stdout."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "-m",
        "ganforge.cli",
        "train",
        *tiny_overrides,
        "train.checkpoint_every=100000",
        "train.sample_every=100000",
        "train.steps=100000",
        "--runs-dir",
        str(tmp_path),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    run = tmp_path / "00000-mnist-dcgan-cond"
    deadline = time.time() + 60
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out.strip().splitlines()[-1] == str(run)
    assert "Traceback" not in err and "--resume" in err
    cks = runs.list_checkpoints(run)
    assert len(cks) == 1 and runs.step_of(cks[0]) > 0
    step = runs.step_of(cks[0])
    assert main(["train", "--resume", str(run), f"train.steps={step + 2}"]) == 0
    assert runs.step_of(runs.list_checkpoints(run)[-1]) == step + 2


# ---- outputs that cannot be written: one line, before any work ---------------------------------
def _unwritable(tmp_path):
    """Output paths that cannot be written, as root too: under /proc, and under a file."""
    (tmp_path / "afile").write_text("x")
    return {"proc": "/proc/ganforge-test/x", "under a file": str(tmp_path / "afile" / "x")}


def _never(*args, **kwargs):
    raise AssertionError("the work started although the output cannot be written")


@pytest.mark.parametrize("where", ["proc", "under a file"])
@pytest.mark.parametrize("verb", ["sample", "sample-folder", "interpolate", "eval", "inpaint", "inpaint-compare"])
def test_unwritable_output_is_one_line_before_any_work(verb, where, run_dir, tmp_path, capsys, monkeypatch):
    import ganforge.api
    import ganforge.tasks.inpaint.app

    if verb in ("sample", "sample-folder", "eval"):  # these check before loading the run
        monkeypatch.setattr(ganforge.api, "load_generator", _never)
        monkeypatch.setattr(ganforge.api, "evaluate", _never)
    monkeypatch.setattr("ganforge.tasks.gan.app.interpolation", _never)
    monkeypatch.setattr(ganforge.tasks.inpaint.app, "load_completer", _never)
    bad = _unwritable(tmp_path)[where]
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "in.png")
    inpaint = ["inpaint", "--model", str(run_dir), "--image", str(tmp_path / "in.png"), "--box", "1,1,5,5"]
    argv = {
        "sample": ["sample", str(run_dir), "--out", bad + ".png"],
        "sample-folder": ["sample", str(run_dir), "--out", bad],
        "interpolate": ["interpolate", str(run_dir), "--out", bad + ".gif"],
        "eval": ["eval", str(run_dir), "--features", "mnist", "--out", bad + ".json"],
        "inpaint": inpaint + ["--out", bad + ".png"],
        "inpaint-compare": inpaint + ["--out", str(tmp_path / "o.png"), "--compare", bad + ".png"],
    }[verb]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write "), err
    assert bad in err[0]
    cause = (
        "files cannot be created in '/proc" if where == "proc" else f"'{tmp_path / 'afile'}' is a file, not a folder"
    )
    assert cause in err[0], err[0]


@pytest.mark.parametrize(
    "out, writer", [("g.png", "PIL.Image.Image.save"), ("s.npz", "numpy.savez"), ("many", "PIL.Image.Image.save")]
)
def test_a_write_that_fails_midway_is_one_line(out, writer, run_dir, tmp_path, capsys, monkeypatch):
    """A full disk met while writing (simulated by a patched writer) names the path and the cause."""
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, full)
    assert main(["sample", str(run_dir), "--n", "2", "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write ") and "No space left on device" in err[0], err
    assert str(tmp_path / out) in err[0]
    assert not list(tmp_path.rglob(".*.tmp"))  # no temporary file left behind


# ---- --device and --threads, the same for every inference verb ----------------------------------
def _verb_argv(verb, run_dir, tmp_path):
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "in.png")
    return {
        "sample": ["sample", str(run_dir), "--n", "2", "--out", str(tmp_path / "s.png")],
        "interpolate": ["interpolate", str(run_dir), "--rows", "1", "--steps", "2", "--out", str(tmp_path / "i.png")],
        "eval": [
            "eval",
            str(run_dir),
            "--features",
            "mnist",
            "--samples",
            "20",
            "--metrics",
            "fid",
            "--no-floor",
            "--no-save",
            "--no-cache",
            "--quiet",
        ],
        "inpaint": [
            "inpaint",
            "--model",
            str(run_dir),
            "--image",
            str(tmp_path / "in.png"),
            "--box",
            "1,1,5,5",
            "--steps",
            "1",
            "--restarts",
            "1",
            "--out",
            str(tmp_path / "o.png"),
        ],
    }[verb]


VERBS = ["sample", "interpolate", "eval", "inpaint"]


@pytest.fixture
def threads_kept():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("verb", VERBS)
def test_device_option_is_checked_the_same_everywhere(verb, run_dir, tmp_path, capsys, threads_kept):
    import torch

    argv = _verb_argv(verb, run_dir, tmp_path)
    assert main(argv + ["--device", "gpu0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --device 'gpu0': expected cpu, cuda, cuda:N or auto"
    if not torch.cuda.is_available():
        assert main(argv + ["--device", "cuda:1"]) == 2
        assert capsys.readouterr().err.strip() == (
            "error: --device cuda:1: CUDA is not available on this machine; use --device cpu (or auto)"
        )
    assert main(argv + ["--device", "auto"]) == 0


@pytest.mark.parametrize("verb", VERBS)
def test_threads_default_to_one_or_the_environment(verb, run_dir, tmp_path, capsys, monkeypatch, threads_kept):
    import torch

    argv = _verb_argv(verb, run_dir, tmp_path)
    torch.set_num_threads(3)
    monkeypatch.delenv("GANFORGE_THREADS", raising=False)
    assert main(argv) == 0 and torch.get_num_threads() == 1
    assert main(argv + ["--threads", "2"]) == 0 and torch.get_num_threads() == 2
    monkeypatch.setenv("GANFORGE_THREADS", "3")
    assert main(argv) == 0 and torch.get_num_threads() == 3
    capsys.readouterr()
    monkeypatch.setenv("GANFORGE_THREADS", "many")
    assert main(argv) == 2
    assert "GANFORGE_THREADS='many': expected a positive integer" in capsys.readouterr().err
    assert main(argv + ["--threads", "0"]) == 2
    assert "--threads: expected a positive number of CPU threads, got 0" in capsys.readouterr().err


# ---- ganforge config ------------------------------------------------------------------------------
def test_config_lists_every_key_with_its_default_and_source_comment(capsys):
    import json

    from ganforge.config import TrainConfig
    from ganforge.tasks import allowed_keys

    assert main(["config"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("train.threads "))
    assert line.split()[:2] == ["train.threads", "null"]
    assert line.endswith("torch.set_num_threads; None leaves torch's default")  # the comment in config.py
    assert "[g_optim]" in out and "[inpaint]" not in out
    for task in ("gan", "inpaint"):
        assert main(["config", task, "--json"]) == 0
        keys = json.loads(capsys.readouterr().out)
        assert [k["key"] for k in keys] == allowed_keys(task)  # every key, in config-file order
        by_key = {k["key"]: k for k in keys}
        assert by_key["task"]["default"] == task
        assert by_key["train.batch_size"]["default"] == TrainConfig().batch_size
        assert by_key["data.size"]["type"] == "Optional[List[int]]"
    assert by_key["inpaint.arch"]["comment"].startswith("completion network: gated")
    assert main(["config", "audio"]) == 2
    assert "task: 'audio' is not allowed; choose one of: gan, inpaint" in capsys.readouterr().err


def test_config_reads_comments_from_the_source_not_a_list():
    from dataclasses import dataclass

    from ganforge.cli.config import field_comments

    @dataclass
    class Base:
        a: int = 1  # the a
        b: str = "x#y"  # not fooled by a hash in a string

    @dataclass
    class Derived(Base):
        c: float = 0.5
        d: tuple = (1, 2)  # on the field's last line

    assert field_comments(Derived) == {
        "a": "the a",
        "b": "not fooled by a hash in a string",
        "d": "on the field's last line",
    }


def test_options_from_parsed_arguments():
    """from_namespace: fields read from the parsed options (renamed where the option is spelt otherwise),
    keyword values on top, defaults for what the command line does not offer."""
    import argparse

    from ganforge.options import from_namespace
    from ganforge.tasks.inpaint.options import DEFAULT_LR, InpaintOptions

    ns = argparse.Namespace(method="latent", steps=7, cls="3", device="cuda", unrelated=1)
    o = from_namespace(InpaintOptions, ns, {"class_": "cls"}, device="cpu")
    assert (o.method, o.steps, o.class_, o.device, o.lr) == ("latent", 7, "3", "cpu", DEFAULT_LR)


# ---- bad input met by a new user (issue 30) --------------------------------------------------------
def _v0_run(tmp_path):
    import shutil
    from pathlib import Path

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "fixtures" / "v0-gan-run", run)
    return run


def test_a_damaged_metrics_file_costs_only_its_bad_lines(tmp_path, capsys):
    """A non-UTF-8 byte and a line that is JSON but not an object (42) are skipped with one warning line;
    'ganforge info' still describes the run and run_info returns the good records."""
    import warnings

    from ganforge.apps.info import run_info

    run = _v0_run(tmp_path)
    good = (run / "metrics.jsonl").read_bytes()
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 3, "loss_d": \xff}\n42\n[1, 2]\n')
        f.write(b'{"step": 5, "kimg": 0.08, "loss_d": 1.0, "loss_g": 0.5}\n{"step": 6, "cut by a cr')
    assert main(["info", str(run)]) == 0
    cap = capsys.readouterr()
    assert "last log   step=5" in cap.out and "Traceback" not in cap.err
    warned = [ln for ln in cap.err.splitlines() if ln.startswith("warning: ")]
    assert len(warned) == 1 and "skipped 3 damaged line(s), e.g. line 5: not UTF-8 text (and 2 more)" in warned[0]
    assert str(run / "metrics.jsonl") in warned[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = run_info(run)
    assert info["last_metrics"]["step"] == 5 and not caught  # once per file: said above already
    assert runs.read_metrics(run)[: good.count(b"\n")] == [__import__("json").loads(x) for x in good.splitlines()]


def test_runs_dir_that_cannot_be_written_is_one_line_before_set_up(tmp_path, tiny_overrides, capsys, monkeypatch):
    from ganforge.tasks.gan import trainer as gan_trainer

    monkeypatch.setattr(gan_trainer.GanTrainer, "__init__", _never)  # nothing is built: the check comes first
    (tmp_path / "afile").write_text("x")
    for runs_dir, cause in [
        (tmp_path / "afile", "it is a file; expected a folder"),
        ("/proc/ganforge-test/runs", "files cannot be created in '/proc'"),
    ]:
        assert main(["train", *tiny_overrides, "--runs-dir", str(runs_dir)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: cannot write runs folder '{runs_dir}': "), err
        assert cause in err[0]


def test_serve_on_a_busy_port_or_unknown_host_is_one_line_without_the_banner(tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--runs-dir", str(tmp_path), "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"error: cannot listen on 127.0.0.1:{port}: the port is already in use (another program, or another "
            "'ganforge serve'); choose another --port"
        ]
    assert main(["serve", "--runs-dir", str(tmp_path), "--host", "no-such-host.invalid"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --host 'no-such-host.invalid': cannot resolve it"), err


def test_broken_yaml_is_one_line_naming_the_file_and_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("train:\n  steps: [1\n  batch_size: 2\n")
    assert main(["train", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path / 'bad.yaml'}: not valid YAML at line 3, column 13: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence that starts at line 2)"
    ]
    run = _v0_run(tmp_path)
    (run / "config.yaml").write_text("task: gan\nmodel: {arch: dcgan\n")
    for argv in (["info", str(run)], ["train", "--resume", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: '{run / 'config.yaml'}' is not valid YAML at line 3"), err


def test_info_on_a_config_of_an_unknown_task_is_an_error(tmp_path, capsys):
    run = _v0_run(tmp_path)
    (run / "config.yaml").write_text("task: nosuchtask\n")
    assert main(["info", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'{run / 'config.yaml'}': task 'nosuchtask' is not a ganforge task" in err[0], err


def test_eval_names_a_text_file_called_npz_plainly(tmp_path, capsys):
    (tmp_path / "x.npz").write_text("hello\n")
    argv = ["eval", "--fake", str(tmp_path / "x.npz"), "--real", str(tmp_path / "x.npz"), "--features", "mnist"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1:] == [
        f"error: fake: {tmp_path / 'x.npz'} is not an .npz file (a NumPy zip archive, as numpy.savez writes): "
        "it holds text"
    ]
    assert "pickled" not in err[-1] and not any("Traceback" in ln for ln in err)


def test_inpaint_needs_at_least_one_step(run_dir, tmp_path, capsys):
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "in.png")
    argv = ["inpaint", "--model", str(run_dir), str(tmp_path / "in.png"), "--box", "1,1,5,5", "--out"]
    assert main([*argv, str(tmp_path / "o.png"), "--steps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --steps and --restarts must be at least 1 (got 0, 8)"
    assert not (tmp_path / "o.png").exists()
