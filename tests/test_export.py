"""``ganforge export`` for every registered task (parametrised over TASKS with their ``tiny`` configs):
each network exported to ONNX and torch.export, run in onnxruntime and as the reloaded program, equal to
PyTorch within 1e-4 at another batch size and, for fully convolutional networks, another image size; the
manifest; the one-line errors. The dynamo exporter takes seconds per network, so each task is trained
and exported once (both formats from one trace) by a module fixture."""

import importlib.util
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import ganforge
from ganforge import cli
from ganforge.errors import RunError, WriteError
from ganforge.export import ExportError, check_format, export_network, export_run, resolve_shape
from ganforge.tasks import TASKS, get_task
from ganforge.tasks.base import Handle

COMMON = [
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
TOL = 1e-4


@pytest.fixture(scope="module", params=TASKS.names())
def exported(request, tmp_path_factory):
    """A tiny run of the task, exported by the CLI to ONNX and torch.export (one trace for both)."""
    task = request.param
    root = tmp_path_factory.mktemp(f"export-{task}")
    run = ganforge.train(overrides=[f"task={task}", *COMMON, *get_task(task).tiny], runs_dir=root / "runs")
    assert cli.main(["export", str(run), "--format", "onnx,torch-export", "--out", str(root / "out")]) == 0
    return run, ganforge.load(run), root / "out", json.loads((root / "out" / "manifest.json").read_text())


def random_inputs(net, batch: int, hw, seed: int = 0):
    """Random inputs like the example ones: floats ~ N(0, 1) (a mask in {0, 1}), integers drawn from the
    example's values; spatial inputs at height/width ``hw``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, x in zip(net.input_names, net.inputs):
        shape = [batch, *x.shape[1:]]
        if name in net.spatial:
            shape[-2:] = hw
        if x.dtype.is_floating_point:
            v = torch.randn(shape, generator=g)
            out.append((v > 0).float() if "mask" in name else v)
        else:
            vals = x.flatten()
            out.append(vals[torch.randint(0, vals.numel(), (int(np.prod(shape)),), generator=g)].reshape(shape))
    return tuple(out)


def test_every_network_matches_pytorch_in_onnxruntime_and_torch_export(exported):
    run, handle, folder, manifest = exported
    nets = handle.export_networks()
    assert manifest["formats"] == ["onnx", "torch-export"] and manifest["task"] == handle.task
    assert manifest["run"] == run.name and manifest["step"] == handle.step == 1 and manifest["ema"] == handle.ema
    assert manifest["checkpoint"] == "checkpoints/step-00000001"  # no local paths (issue 30)
    assert set(manifest["networks"]) == {n.name for n in nets}
    for net in nets:
        entry = manifest["networks"][net.name]
        assert entry["files"] == {"onnx": f"{net.name}.onnx", "torch-export": f"{net.name}.pt2"}
        assert [d["name"] for d in entry["inputs"]] == list(net.input_names)
        assert [d["name"] for d in entry["outputs"]] == list(net.output_names)
        assert entry["dims"]["batch"]["min"] == 1 and entry["onnx_opset"] >= 18
        session = ort.InferenceSession(str(folder / entry["files"]["onnx"]), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == list(net.input_names)
        assert session.get_inputs()[0].shape[0] == "batch"  # readable dynamic dims for deployers
        program = torch.export.load(str(folder / entry["files"]["torch-export"])).module()
        first = next((x for n, x in zip(net.input_names, net.inputs) if n in net.spatial), net.inputs[0])
        h, w = first.shape[-2:]
        k = net.multiple if net.multiple > 1 else 3
        sizes = [(3, (h, w)), (1, (h + 2 * k, w + k) if net.spatial else (h, w))]  # other batches; another size
        # and the handle's own example inputs (a blank image for inpainting: there onnxscript's optimizer once
        # dropped the "+ 1e-8" of a pixel norm, a 0.13 error that random inputs did not show)
        for batch, hw, inputs in [(2, (h, w), net.inputs)] + [(b, s, random_inputs(net, b, s)) for b, s in sizes]:
            with torch.no_grad():
                ref = net.module(*inputs)
            refs = ref if isinstance(ref, tuple) else (ref,)
            got_onnx = session.run(None, {n: x.numpy() for n, x in zip(net.input_names, inputs)})
            got_pt2 = program(*inputs)
            got_pt2 = got_pt2 if isinstance(got_pt2, tuple) else (got_pt2,)
            dims = {"batch": batch, "height": hw[0], "width": hw[1]}
            for r, a, b, d in zip(refs, got_onnx, got_pt2, entry["outputs"]):
                assert tuple(r.shape) == resolve_shape(d["shape"], **dims), (net.name, d)
                assert np.abs(a - r.numpy()).max() <= TOL, (net.name, "onnx", batch, hw)
                assert (b - r).abs().max().item() <= TOL, (net.name, "torch-export", batch, hw)
        if net.multiple > 1:  # the program checks the size the network needs
            with pytest.raises(Exception, match=f"% {net.multiple} == 0"):
                program(*random_inputs(net, 2, (h, w + 1)))
            assert entry["dims"]["height"]["multiple"] == net.multiple


def test_the_onnx_file_carries_its_manifest_entry(exported):
    run, handle, folder, manifest = exported
    name, entry = next(iter(manifest["networks"].items()))
    model = onnx.load(str(folder / entry["files"]["onnx"]))
    stored = json.loads({p.key: p.value for p in model.metadata_props}["ganforge"])
    assert stored["network"] == name and stored["step"] == 1 and stored["inputs"] == entry["inputs"]


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    """A tiny class-conditional GAN run (one step)."""
    overrides = ["task=gan", *COMMON, *get_task("gan").tiny, "model.conditional=true"]
    return ganforge.train(overrides=overrides, runs_dir=tmp_path_factory.mktemp("gan"))


def test_gan_generator_lists_its_class_input(gan_run):
    net = ganforge.load(gan_run).export_networks()[0]
    assert net.name == "generator" and net.input_names == ("z", "label") and net.output_names == ("image",)
    assert net.inputs[1].dtype == torch.int64 and net.info["num_classes"] == 10 and net.info["class_names"][3] == "3"
    assert net.values["label"] == "int64 class index in [0, 10)"


def test_default_export_networks_is_the_module_with_its_export_inputs(gan_run):
    h = ganforge.load(gan_run)
    (net,) = Handle.export_networks(h)  # what a handle that does not override it gets
    assert (
        net.name == "gan" and net.module is h.module and net.spatial == () and net.input_names == ("input0", "input1")
    )
    assert [tuple(x.shape) for x in net.inputs] == [tuple(x.shape) for x in h.export_inputs(2)]


# ---- the output folder (issue 30) -------------------------------------------------------------------


def test_a_new_export_replaces_an_earlier_one_whole_with_normal_permissions(gan_run, tmp_path):
    """Re-exporting into a folder never leaves the earlier export's files beside the new ones (the issue: an
    old generator.onnx of another step next to a new .pt2); files are 0644 under umask 022 (not mkstemp's or
    mkdtemp's 0600/0700), the folder 0755, and the manifest holds no local path."""
    import os
    import stat

    old_umask = os.umask(0o022)
    try:
        out = tmp_path / "deploy"
        export_run(gan_run, "onnx", out)
        assert sorted(p.name for p in out.iterdir()) == ["generator.onnx", "manifest.json"]
        manifest = export_run(gan_run, "torch-export", out)
        assert sorted(p.name for p in out.iterdir()) == ["generator.pt2", "manifest.json"]
        assert manifest["networks"]["generator"]["files"] == {"torch-export": "generator.pt2"}
        for p in out.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        assert [p.name for p in tmp_path.iterdir()] == ["deploy"]  # no temporary folder left beside it
        text = (out / "manifest.json").read_text()
        assert str(tmp_path) not in text and str(gan_run) not in text
        assert manifest["run"] == gan_run.name and manifest["checkpoint"] == "checkpoints/step-00000001"
    finally:
        os.umask(old_umask)


def test_an_export_into_a_folder_with_other_files_keeps_them(gan_run, tmp_path):
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "server.py").write_text("print('mine')\n")
    export_run(gan_run, "torch-export", out)
    (out / "manifest.json").unlink()  # an earlier export whose manifest was lost: its network file still goes
    export_run(gan_run, "onnx", out)
    assert sorted(p.name for p in out.iterdir()) == ["generator.onnx", "manifest.json", "server.py"]
    assert (out / "server.py").read_text() == "print('mine')\n"


def test_a_failed_export_leaves_the_earlier_one_intact(gan_run, tmp_path, monkeypatch):
    import ganforge.export

    out = tmp_path / "deploy"
    export_run(gan_run, "torch-export", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise ExportError("network 'generator' cannot be exported: simulated")

    monkeypatch.setattr(ganforge.export, "export_network", broken)
    with pytest.raises(ExportError, match="simulated"):
        export_run(gan_run, "onnx", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["deploy"]


def test_checkpoint_weights_are_written_with_normal_permissions(tmp_path):
    """safetensors writes its files 0600: runs.save_checkpoint gives them 0666 less the umask, like the rest."""
    import os
    import stat

    from ganforge import runs

    old_umask = os.umask(0o022)
    try:
        folder = runs.save_checkpoint(
            tmp_path / "checkpoints" / "step-00000001", {"g": {"w": torch.zeros(2)}}, {}, {}, {"step": 1}
        )
    finally:
        os.umask(old_umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == dict.fromkeys(["g.safetensors", "config.json", "state.pt", "meta.json"], 0o644)


# ---- errors --------------------------------------------------------------------------------------


def test_unknown_format_is_one_line(tmp_path):
    with pytest.raises(
        ExportError, match=r"^--format 'tflite': choose one of: onnx, torch-export \(or both, comma-separated\)$"
    ):
        export_run(tmp_path, "tflite", tmp_path / "out")
    assert check_format("torch-export,onnx,onnx") == ("torch-export", "onnx")


def test_missing_extra_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(ExportError, match=r"^--format onnx needs onnxscript: pip install 'ganforge\[export\]'$"):
        check_format("onnx")
    assert check_format("torch-export") == ("torch-export",)  # needs only PyTorch


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    with pytest.raises(RunError, match="is not a ganforge run folder"):
        export_run(tmp_path / "photos", "onnx", tmp_path / "out")
    assert cli.main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: run folder '{tmp_path / 'missing'}' does not exist"]
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_refused(gan_run, tmp_path):
    (tmp_path / "out.onnx").write_text("x")
    with pytest.raises(WriteError, match=r"^cannot write the export to '.*out.onnx': it is a file; --out is a folder"):
        export_run(gan_run, "onnx", tmp_path / "out.onnx")


def test_resolve_shape():
    assert resolve_shape(["batch", 1, "4*height", "width"], batch=2, height=7, width=9) == (2, 1, 28, 9)
    with pytest.raises(ExportError, match="shape entry 'depth'"):
        resolve_shape(["depth"], batch=1)


class _Branchy(torch.nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x  # a branch on the values: not traceable


def test_an_untraceable_network_and_a_batch_of_one_are_one_line(tmp_path):
    from ganforge.tasks.base import ExportNet

    net = ExportNet("branchy", _Branchy(), (torch.ones(2, 3),), ("x",))
    with pytest.raises(ExportError, match=r"^network 'branchy' cannot be exported with dynamic batch: \S"):
        export_network(net, "torch-export", tmp_path)
    one = ExportNet("one", torch.nn.Identity(), (torch.ones(1, 3),), ("x",))
    with pytest.raises(ExportError, match=r"^network 'one': example inputs need a batch of 2 or more"):
        export_network(one, "torch-export", tmp_path)
    assert list(tmp_path.iterdir()) == []
