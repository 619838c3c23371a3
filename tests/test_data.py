"""Tests for ganforge.data: tiny files in the real formats, written to tmp_path."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import sys
import time
import types
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from ganforge.config import DataConfig
from ganforge.data import DATASETS, DataError, ImageData, dataset_fingerprint, load_dataset, transform
from ganforge.data.idx import FASHION_MNIST_CLASSES

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---- writers for the real formats -------------------------------------------------------------


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> Path:
    magic = 2051 if arr.ndim == 3 else 2049
    data = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def make_idx_dataset(folder: Path, prefix: str = "train", n: int = 12, gz: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return images, labels


def write_cifar(folder: Path, n: int = 4, seed: int = 0):
    """All five train batches, the test batch and batches.meta, as protocol-2 pickles."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"{i}.png".encode() for i in range(n)]}  # fmt: skip
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        out[name] = (data, labels)
    meta = {b"num_cases_per_batch": n, b"label_names": [s.encode() for s in CIFAR_NAMES], b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return out


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def gray(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w), dtype=np.uint8)


def cfg(**kw) -> DataConfig:
    return DataConfig(**kw)


def folder_cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(dataset="folder", root=str(root), **kw)


# ---- registry, ImageData, fingerprint ----------------------------------------------------------


def test_data_registry_names():
    from ganforge.tasks import TASKS

    for name in TASKS.names():  # the translate and video tasks register their datasets when they load
        TASKS.get(name)

    assert DATASETS.names() == sorted(
        [
            "mnist-embedded", "emoji", "mnist", "fashion-mnist", "cifar10", "folder",
            "paired", "unpaired", "moving-mnist", "clips",
        ]
    )  # fmt: skip
    assert all(callable(DATASETS.get(n)) for n in DATASETS.names())


def test_data_unknown_dataset_is_data_error():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'.*mnist-embedded"):
        load_dataset(cfg(dataset="imagenet"))


def test_data_imagedata_properties_and_checks():
    d = ImageData(torch.zeros(2, 3, 5, 7, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"], "x", "src")
    assert d.shape == (3, 5, 7) and d.num_classes == 2 and d.skipped == [] and len(d) == 2
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros(2, 2, 5, 7, dtype=torch.uint8), None, [], "x", "src")


def test_data_fingerprint():
    x = torch.randint(0, 256, (4, 1, 6, 6), dtype=torch.uint8)
    a = ImageData(x, torch.tensor([0, 1, 0, 1]), ["0", "1"], "x", "s")
    b = ImageData(x.clone(), torch.tensor([0, 1, 0, 1]), ["0", "1"], "y", "t")
    fa = dataset_fingerprint(a)
    assert len(fa) == 64 and int(fa, 16) >= 0 and fa == dataset_fingerprint(b)
    y = x.clone()
    y[3, 0, 5, 5] ^= 1
    assert dataset_fingerprint(ImageData(y, a.labels, a.class_names, "x", "s")) != fa
    assert dataset_fingerprint(ImageData(x, torch.tensor([1, 1, 0, 1]), ["0", "1"], "x", "s")) != fa
    assert dataset_fingerprint(ImageData(x, None, [], "x", "s")) != fa
    assert dataset_fingerprint(ImageData(x.reshape(4, 1, 4, 9), a.labels, a.class_names, "x", "s")) != fa


# ---- embedded MNIST ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_embedded() -> ImageData:
    return load_dataset(cfg())


def test_data_embedded_mnist(data_embedded):
    d = data_embedded
    assert d.images.shape == (10000, 1, 28, 28) and d.images.dtype == torch.uint8
    assert d.images.is_contiguous()
    assert d.labels.dtype == torch.int64 and d.labels.shape == (10000,)
    assert sorted(d.labels.unique().tolist()) == list(range(10))
    assert d.class_names == [str(i) for i in range(10)] and d.name == "mnist" and d.skipped == []
    assert d.images.max() == 255 and d.images.min() == 0


def test_data_embedded_mnist_files_md5():
    folder = resources.files("ganforge") / "assets" / "mnist"
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in
           ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}  # fmt: skip
    assert md5 == {
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }


def test_data_embedded_mnist_is_fast_and_ignores_split(data_embedded):
    t = time.perf_counter()
    d = load_dataset(cfg(split="test"))
    assert time.perf_counter() - t < 1.0
    assert torch.equal(d.images, data_embedded.images)


def test_data_embedded_mnist_resized_rgb(data_embedded):
    d = load_dataset(cfg(size=[32, 32], channels=3, limit=50))
    assert d.images.shape == (50, 3, 32, 32) and d.images.is_contiguous()
    assert torch.equal(d.images[:, 0], d.images[:, 2])
    assert torch.equal(d.labels, data_embedded.labels[:50])


# ---- built-in emoji (colour) ------------------------------------------------------------------

EMOJI_COUNTS = {
    "activities": 85, "animals-nature": 159, "flags": 270, "food-drink": 131, "objects": 264,
    "people-body": 2261, "smileys-emotion": 169, "symbols": 224, "travel-places": 218,
}  # fmt: skip
TWEMOJI_SRC = Path(__file__).resolve().parents[2] / "shared" / "data" / "twemoji-64"


@pytest.fixture(scope="module")
def data_emoji() -> ImageData:
    return load_dataset(cfg(dataset="emoji"))


def test_data_emoji_is_built_in_with_its_classes(data_emoji):
    from ganforge.data.emoji import CREDIT, EMOJI_CLASSES

    d = data_emoji
    assert d.images.shape == (3781, 3, 64, 64) and d.images.dtype == torch.uint8 and d.images.is_contiguous()
    assert d.name == "emoji" and d.class_names == EMOJI_CLASSES == list(EMOJI_COUNTS)
    assert dict(zip(d.class_names, torch.bincount(d.labels).tolist())) == EMOJI_COUNTS
    # on white: every image's corners are white, and the images are colour (not grey in disguise)
    assert (d.images[:, :, 0, 0] == 255).float().mean() > 0.95
    assert (d.images[:, 0] != d.images[:, 1]).any()
    # the asset ships with its licence and source, and stays small
    folder = resources.files("ganforge") / "assets" / "emoji"
    readme = (folder / "README.md").read_text()
    assert CREDIT in readme and "CC-BY 4.0" in readme and "emoji-datasource-twitter" in readme
    assert (folder / "emoji.npz").stat().st_size < 8_000_000  # bytes (about 6.4 MB)


def test_data_emoji_sizes_classes_and_heldout():
    d = load_dataset(cfg(dataset="emoji", size=[32, 32]))
    assert d.images.shape == (3781, 3, 32, 32)
    g = load_dataset(cfg(dataset="emoji", size=[32, 32], channels=1, limit=10))
    assert g.images.shape == (10, 1, 32, 32)
    flags = load_dataset(cfg(dataset="emoji", classes=["flags", "symbols"]))
    assert flags.class_names == ["flags", "symbols"] and len(flags) == 270 + 224
    held = load_dataset(cfg(dataset="emoji", heldout=500, part="heldout"))
    assert len(held) == 500


@pytest.mark.skipif(not TWEMOJI_SRC.is_dir(), reason="the twemoji-64 source folder is not on this machine")
def test_data_emoji_equals_the_source_folder_loaded_as_a_folder(data_emoji):
    """``data.dataset=emoji`` gives the images, labels and classes that ``data.dataset=folder`` reads from the
    folder the asset was built from, at the native size and resized (the asset is lossless)."""
    for size in (None, [32, 32]):
        a = load_dataset(cfg(dataset="emoji", size=size)) if size else data_emoji
        b = load_dataset(cfg(dataset="folder", root=str(TWEMOJI_SRC), size=size))
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.class_names == b.class_names


def test_data_emoji_missing_or_damaged_asset_is_a_one_line_error(tmp_path, monkeypatch):
    import ganforge.data.emoji as emoji

    monkeypatch.setattr(emoji, "asset", lambda: tmp_path / "emoji.npz")
    with pytest.raises(DataError, match="emoji.npz is missing; reinstall ganforge"):
        load_dataset(cfg(dataset="emoji"))
    (tmp_path / "emoji.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot be read") as e:
        load_dataset(cfg(dataset="emoji"))
    assert "\n" not in str(e.value)


# ---- MNIST / Fashion-MNIST IDX files ------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_data_mnist_layouts(tmp_path, gz, layout):
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    images, labels = make_idx_dataset(folder, gz=gz)
    d = load_dataset(cfg(dataset="mnist", root=str(tmp_path)))
    assert d.images.shape == (12, 1, 28, 28) and d.images.dtype == torch.uint8
    assert np.array_equal(d.images[:, 0].numpy(), images)
    assert d.labels.tolist() == labels.tolist() and d.labels.dtype == torch.int64
    assert d.class_names == [str(i) for i in range(10)] and d.name == "mnist"
    assert d.source == str(folder)


def test_data_mnist_split_test(tmp_path):
    make_idx_dataset(tmp_path, "train", n=12, seed=0)
    images, _ = make_idx_dataset(tmp_path, "t10k", n=5, seed=1)
    d = load_dataset(cfg(dataset="mnist", root=str(tmp_path), split="test"))
    assert np.array_equal(d.images[:, 0].numpy(), images)


def test_data_fashion_mnist(tmp_path):
    images, labels = make_idx_dataset(tmp_path / "FashionMNIST" / "raw", gz=True)
    d = load_dataset(cfg(dataset="fashion-mnist", root=str(tmp_path)))
    assert d.class_names == FASHION_MNIST_CLASSES and d.class_names[0] == "T-shirt/top"
    assert d.class_names[9] == "Ankle boot" and d.name == "fashion-mnist"
    assert np.array_equal(d.images[:, 0].numpy(), images)


def test_data_mnist_gzip_detected_by_content(tmp_path):
    images, _ = make_idx_dataset(tmp_path, gz=True)
    for p in tmp_path.glob("*.gz"):
        p.rename(p.with_suffix(""))  # gzip data under the raw name
    d = load_dataset(cfg(dataset="mnist", root=str(tmp_path)))
    assert np.array_equal(d.images[:, 0].numpy(), images)


def test_data_mnist_resize_limit(tmp_path):
    make_idx_dataset(tmp_path, n=12)
    d = load_dataset(cfg(dataset="mnist", root=str(tmp_path), size=[48, 64], limit=7))
    assert d.images.shape == (7, 1, 48, 64) and d.labels.tolist() == list(range(7))
    d = load_dataset(cfg(dataset="mnist", root=str(tmp_path), size=[48, 64], crop="stretch", channels=3))
    assert d.images.shape == (12, 3, 48, 64)


def test_data_mnist_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"not found in .*train-images-idx3-ubyte.*data\.download=true"):
        load_dataset(cfg(dataset="mnist", root=str(tmp_path)))


def test_data_mnist_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"data\.root: folder '.*nope' does not exist"):
        load_dataset(cfg(dataset="mnist", root=str(tmp_path / "nope")))
    with pytest.raises(DataError, match=r"data\.root: the 'mnist' dataset needs data\.root=PATH"):
        load_dataset(cfg(dataset="mnist"))


@pytest.mark.parametrize("gz", [False, True])
def test_data_mnist_truncated(tmp_path, gz):
    make_idx_dataset(tmp_path, gz=gz)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    msg = (
        r"cannot read IDX file '.*train-images-idx3-ubyte\.gz'.*truncated"
        if gz
        else (r"IDX file '.*train-images-idx3-ubyte' is truncated: the header says shape \(12, 28, 28\)")
    )
    with pytest.raises(DataError, match=msg):
        load_dataset(cfg(dataset="mnist", root=str(tmp_path)))


def test_data_mnist_wrong_magic_and_count(tmp_path):
    make_idx_dataset(tmp_path, gz=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    (tmp_path / "train-images-idx3-ubyte").write_bytes(labels.read_bytes())
    with pytest.raises(DataError, match=r"not an IDX images file: magic number 2049, expected 2051"):
        load_dataset(cfg(dataset="mnist", root=str(tmp_path)))
    make_idx_dataset(tmp_path, gz=False)
    write_idx(labels, np.zeros(3, np.uint8), gz=False)
    with pytest.raises(DataError, match="12 images but 3 labels"):
        load_dataset(cfg(dataset="mnist", root=str(tmp_path)))


@pytest.fixture
def data_fake_torchvision(monkeypatch):
    """Stand-ins for the torchvision download helpers (no network, no slow import)."""
    names = ("torchvision", "torchvision.datasets", "torchvision.datasets.utils")
    tv, datasets, utils = (types.ModuleType(n) for n in names)
    tv.datasets, datasets.utils = datasets, utils
    for mod in (tv, datasets, utils):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return datasets


def test_data_mnist_download_through_torchvision(tmp_path, data_fake_torchvision):
    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            make_idx_dataset(Path(root) / "MNIST" / "raw", "train" if train else "t10k", n=3)

    data_fake_torchvision.MNIST = FakeMNIST
    root = tmp_path / "new"
    d = load_dataset(cfg(dataset="mnist", root=str(root), download=True))
    assert calls == [(str(root), True, True)] and d.images.shape == (3, 1, 28, 28)
    load_dataset(cfg(dataset="mnist", root=str(root), download=True))
    assert len(calls) == 1  # files present: no second download


def test_data_download_failure(tmp_path, data_fake_torchvision):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    data_fake_torchvision.FashionMNIST = offline
    with pytest.raises(DataError, match=r"downloading FashionMNIST into '.*' with torchvision failed: network"):
        load_dataset(cfg(dataset="fashion-mnist", root=str(tmp_path), download=True))


def test_data_cifar10_download_through_torchvision(tmp_path, data_fake_torchvision):
    calls = []

    class FakeCIFAR10:
        url, filename, tgz_md5 = "https://example.invalid/cifar.tgz", "cifar.tgz", "0" * 32

    def fake_download(url, root, filename, md5):
        calls.append((url, root, filename, md5))
        write_cifar(Path(root) / "cifar-10-batches-py", n=2)

    data_fake_torchvision.CIFAR10 = FakeCIFAR10
    data_fake_torchvision.utils.download_and_extract_archive = fake_download
    d = load_dataset(cfg(dataset="cifar10", root=str(tmp_path / "c"), download=True, split="test"))
    assert calls == [(FakeCIFAR10.url, str(tmp_path / "c"), "cifar.tgz", "0" * 32)]
    assert d.images.shape == (2, 3, 32, 32)


# ---- CIFAR-10 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [True, False])
def test_data_cifar10(tmp_path, nested):
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    written = write_cifar(folder, n=4)
    d = load_dataset(cfg(dataset="cifar10", root=str(tmp_path)))
    assert d.images.shape == (20, 3, 32, 32) and d.images.dtype == torch.uint8 and d.images.is_contiguous()
    data = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert np.array_equal(d.images.numpy(), data.reshape(-1, 3, 32, 32))
    assert d.labels.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert d.class_names == CIFAR_NAMES and d.name == "cifar10"
    t = load_dataset(cfg(dataset="cifar10", root=str(tmp_path), split="test", channels=1, size=[16, 16]))
    assert t.images.shape == (4, 1, 16, 16) and t.labels.tolist() == written["test_batch"][1]


def test_data_cifar10_forbidden_global(tmp_path):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f, protocol=2)
    with pytest.raises(DataError, match=r"refusing to load '.*test_batch'.*(posix|os|nt)\.system"):
        load_dataset(cfg(dataset="cifar10", root=str(tmp_path), split="test"))
    assert not marker.exists()
    with open(tmp_path / "test_batch", "wb") as f:
        f.write(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(DataError, match=r"builtins\.eval"):
        load_dataset(cfg(dataset="cifar10", root=str(tmp_path), split="test"))


def test_data_cifar10_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError, match=r"cifar10 train files not found.*data_batch_1.*data\.download=true"):
        load_dataset(cfg(dataset="cifar10", root=str(tmp_path)))
    write_cifar(tmp_path)
    p = tmp_path / "test_batch"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(DataError, match=r"cannot read CIFAR-10 batch '.*test_batch'"):
        load_dataset(cfg(dataset="cifar10", root=str(tmp_path), split="test"))
    with open(p, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(DataError, match=r"uint8 array of shape \[N, 3072\]"):
        load_dataset(cfg(dataset="cifar10", root=str(tmp_path), split="test"))


# ---- image folders -------------------------------------------------------------------------------


def test_data_folder_classes_exact_pixels(tmp_path):
    arrs = {}
    for cls, seeds in (("dog", (1, 2)), ("cat", (3,)), ("emu", (4, 5))):
        for s in seeds:
            arrs[(cls, s)] = rgb(8, 10, s)
            save(tmp_path / cls / f"img{s}.png", arrs[(cls, s)])
    d = load_dataset(folder_cfg(tmp_path))
    assert d.class_names == ["cat", "dog", "emu"] and d.num_classes == 3
    assert d.images.shape == (5, 3, 8, 10) and d.images.dtype == torch.uint8
    assert d.labels.tolist() == [0, 1, 1, 2, 2]  # sorted by relative path
    order = [("cat", 3), ("dog", 1), ("dog", 2), ("emu", 4), ("emu", 5)]
    for i, key in enumerate(order):
        assert np.array_equal(d.images[i].permute(1, 2, 0).numpy(), arrs[key])
    assert d.name == tmp_path.name and d.source == str(tmp_path.resolve())


def test_data_folder_formats(tmp_path):
    a = rgb(12, 16, 0)
    save(tmp_path / "a.png", a)
    save(tmp_path / "b.BMP", a)
    save(tmp_path / "c.webp", a, lossless=True)
    smooth = np.broadcast_to(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], (12, 16, 3)).copy()
    save(tmp_path / "d.JPEG", smooth, quality=95)
    save(tmp_path / "e.jpg", smooth, quality=95)
    (tmp_path / "notes.txt").write_text("not an image")
    save(tmp_path / ".hidden.png", a)
    d = load_dataset(folder_cfg(tmp_path))
    assert d.images.shape == (5, 3, 12, 16) and d.labels is None and d.class_names == []
    for i in range(3):  # lossless: exact round-trip
        assert np.array_equal(d.images[i].permute(1, 2, 0).numpy(), a)
    for i in (3, 4):  # JPEG: close
        assert np.abs(d.images[i].permute(1, 2, 0).numpy().astype(int) - smooth).mean() < 4


def test_data_folder_mixed_layout_has_no_labels(tmp_path):
    save(tmp_path / "top.png", gray(6, 6, 0))
    save(tmp_path / "sub" / "x.png", gray(6, 6, 1))
    save(tmp_path / "sub" / "deeper" / "y.png", gray(6, 6, 2))
    d = load_dataset(folder_cfg(tmp_path))
    assert d.labels is None and d.class_names == [] and d.images.shape == (3, 1, 6, 6)
    # sorted by relative path parts: sub/deeper/y.png, sub/x.png, top.png
    for i, seed in enumerate((2, 1, 0)):
        assert np.array_equal(d.images[i, 0].numpy(), gray(6, 6, seed))


def test_data_folder_channels(tmp_path):
    g, c = gray(8, 8, 0), rgb(8, 8, 1)
    save(tmp_path / "g.png", g)
    d = load_dataset(folder_cfg(tmp_path))
    assert d.images.shape == (1, 1, 8, 8)  # all grayscale -> 1 channel
    save(tmp_path / "h.png", c)
    d = load_dataset(folder_cfg(tmp_path))
    assert d.images.shape == (2, 3, 8, 8)  # any colour -> 3 channels, grey repeated
    assert all(np.array_equal(d.images[0, k].numpy(), g) for k in range(3))
    d = load_dataset(folder_cfg(tmp_path, channels=1))
    assert np.array_equal(d.images[1, 0].numpy(), np.asarray(Image.fromarray(c).convert("L")))


def test_data_folder_gray_palette_16bit_alpha_exif(tmp_path):
    pal = Image.fromarray(gray(6, 6, 0)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.putpalette([v for i in range(256) for v in (i, i, i)])
    pal.save(tmp_path / "a_pal.png")
    deep = (np.arange(36).reshape(6, 6) * 1800).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "b_16bit.png")
    d = load_dataset(folder_cfg(tmp_path))
    assert d.images.shape == (2, 1, 6, 6)
    assert np.array_equal(d.images[1, 0].numpy(), (deep >> 8).astype(np.uint8))

    other = tmp_path / "alpha"
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:2, :, 3] = 255  # top half opaque, bottom half transparent (colour 200 underneath)
    save(other / "x.png", rgba)
    d = load_dataset(folder_cfg(other))
    assert d.images[0, :, :2].eq(200).all() and d.images[0, :, 2:].eq(0).all()

    photo = tmp_path / "exif"
    photo.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: stored 20 wide x 10 high, shown 10 wide x 20 high
    Image.fromarray(rgb(10, 20, 3)).save(photo / "p.jpg", exif=exif)
    assert load_dataset(folder_cfg(photo)).shape == (3, 20, 10)


@pytest.mark.parametrize("crop", ["center", "stretch"])
@pytest.mark.parametrize("resize", ["nearest", "bilinear", "bicubic", "lanczos", "box"])
def test_data_folder_resize_non_square(tmp_path, crop, resize):
    save(tmp_path / "a.png", rgb(30, 30, 0))
    save(tmp_path / "b.jpg", rgb(50, 20, 1))
    d = load_dataset(folder_cfg(tmp_path, size=[48, 64], crop=crop, resize=resize))
    assert d.images.shape == (2, 3, 48, 64) and d.images.is_contiguous()


def test_data_center_crop_keeps_the_middle(tmp_path):
    bands = np.zeros((30, 90, 3), np.uint8)
    bands[:, :30, 0] = 255  # red | green | blue, 30 columns each
    bands[:, 30:60, 1] = 255
    bands[:, 60:, 2] = 255
    save(tmp_path / "a.png", bands)
    d = load_dataset(folder_cfg(tmp_path, size=[10, 10], crop="center", resize="nearest"))
    assert d.images[0, 1].eq(255).all() and d.images[0, 0].eq(0).all() and d.images[0, 2].eq(0).all()
    d = load_dataset(folder_cfg(tmp_path, size=[10, 30], crop="stretch", resize="nearest"))
    assert d.images[0, 0, :, :10].eq(255).all() and d.images[0, 2, :, 20:].eq(255).all()


def test_data_tensor_crop_matches_folder(tmp_path):
    """MNIST-style tensors and image files go through the same resize."""
    images, _ = make_idx_dataset(tmp_path / "idx", n=3, gz=False)
    for i in range(3):
        save(tmp_path / "imgs" / f"{i}.png", images[i])
    kw = dict(size=[20, 36], crop="center", resize="bicubic")
    a = load_dataset(cfg(dataset="mnist", root=str(tmp_path / "idx"), **kw))
    b = load_dataset(folder_cfg(tmp_path / "imgs", **kw))
    assert torch.equal(a.images, b.images)


def test_data_luma_matches_pil():
    x = np.random.default_rng(0).integers(0, 256, size=(3, 3, 17, 19), dtype=np.uint8)
    y = transform.convert_channels(x, 1)
    for i in range(3):
        want = np.asarray(Image.fromarray(x[i].transpose(1, 2, 0)).convert("L"))
        assert np.array_equal(y[i, 0], want)
    assert np.array_equal(transform.convert_channels(y, 3), np.repeat(y, 3, axis=1))


def test_data_folder_limit(tmp_path):
    for i in range(6):
        save(tmp_path / f"{i}.png", gray(5, 5, i))
    d = load_dataset(folder_cfg(tmp_path, limit=4, size=[8, 8]))
    assert d.images.shape == (4, 1, 8, 8)


def test_data_folder_truncated_png(tmp_path):
    for i in range(4):
        save(tmp_path / "ok" / f"{i}.png", rgb(16, 16, i))
    root = tmp_path / "ok"
    bad = root / "2.png"
    bad.write_bytes(bad.read_bytes()[:-300])
    with pytest.raises(DataError, match=r"cannot read image '.*2\.png': .*truncated.*data\.skip_bad=true"):
        load_dataset(folder_cfg(root))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    (root / "3.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"cannot read image '.*3\.png': not an image file PIL can identify"):
        load_dataset(folder_cfg(root))
    d = load_dataset(folder_cfg(root, skip_bad=True))
    assert d.images.shape == (2, 3, 16, 16) and len(d.skipped) == 2
    assert [Path(p).name for p in d.skipped] == ["2.png", "3.png"]
    assert np.array_equal(d.images[1].permute(1, 2, 0).numpy(), rgb(16, 16, 1))


def test_data_folder_mixed_sizes(tmp_path):
    save(tmp_path / "a.png", gray(10, 12, 0))
    save(tmp_path / "b.png", gray(10, 12, 1))
    save(tmp_path / "c.png", gray(7, 9, 2))
    with pytest.raises(DataError, match=r"different sizes.*10x12 \(2 images\), 7x9 \(1 image\).*data\.size=HxW"):
        load_dataset(folder_cfg(tmp_path))
    assert load_dataset(folder_cfg(tmp_path, size=[10, 12])).shape == (1, 10, 12)


def test_data_folder_missing_empty_and_file(tmp_path):
    with pytest.raises(DataError, match=r"data\.root: folder '.*missing' does not exist"):
        load_dataset(folder_cfg(tmp_path / "missing"))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"no images found in '.*empty'.*\.png, \.jpg, \.jpeg, \.webp, \.bmp"):
        load_dataset(folder_cfg(tmp_path / "empty"))
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset(folder_cfg(tmp_path / "empty" / "readme.txt"))


def test_data_memory_check(tmp_path, monkeypatch):
    save(tmp_path / "a.png", gray(8, 8, 0))
    monkeypatch.setattr(transform, "available_memory", lambda: 1000)
    with pytest.raises(DataError, match=r"more than half of the available RAM.*data\.size or data\.limit.*streaming"):
        load_dataset(folder_cfg(tmp_path, size=[64, 64]))
    with pytest.raises(DataError, match="available RAM"):
        load_dataset(cfg(size=[32, 32]))
    monkeypatch.setattr(transform, "available_memory", lambda: None)
    assert load_dataset(folder_cfg(tmp_path, size=[64, 64])).shape == (1, 64, 64)


def test_heldout_split_matches_the_classifier_split():
    import torch

    from ganforge.config import DataConfig
    from ganforge.data import heldout_split, load_dataset

    full = load_dataset(DataConfig())
    train = load_dataset(DataConfig(heldout=2000, part="train"))
    held = load_dataset(DataConfig(heldout=2000, part="heldout"))
    assert len(train) == 8000 and len(held) == 2000
    perm = torch.randperm(10000, generator=torch.Generator().manual_seed(0))  # the classifier script's rule
    assert torch.equal(held.images, full.images[perm[8000:].sort().values])
    assert torch.equal(train.labels, full.labels[heldout_split(10000, 2000, 0)[0]])
    with pytest.raises(DataError, match="data.heldout=20000: the dataset has only 10000 images"):
        load_dataset(DataConfig(heldout=20000, part="train"))


# ---- data.classes ---------------------------------------------------------------------------------


def test_data_classes_keeps_those_classes_renumbered(data_embedded):
    d = load_dataset(cfg(classes=["5", "6", "7", "8", "9"]))
    keep = data_embedded.labels >= 5
    assert torch.equal(d.images, data_embedded.images[keep])
    assert torch.equal(d.labels, data_embedded.labels[keep] - 5)
    assert d.class_names == ["5", "6", "7", "8", "9"] and len(d) == int(keep.sum()) < 10000


def test_data_classes_are_chosen_before_the_limit(data_embedded):
    d = load_dataset(cfg(classes=["9", "7"], limit=300))  # order of the list does not matter
    expected = data_embedded.images[(data_embedded.labels == 7) | (data_embedded.labels == 9)][:300]
    assert torch.equal(d.images, expected) and d.class_names == ["7", "9"]
    assert sorted(d.labels.unique().tolist()) == [0, 1]


def test_data_classes_by_name_in_an_image_folder(tmp_path):
    for c, seeds in (("cat", (1, 2)), ("dog", (3,)), ("emu", (4, 5))):
        for s in seeds:
            save(tmp_path / c / f"img{s}.png", rgb(8, 8, s))
    d = load_dataset(folder_cfg(tmp_path, classes=["emu", "0"], limit=3))  # a name, and an index (cat)
    assert d.class_names == ["cat", "emu"] and d.labels.tolist() == [0, 0, 1]


def test_data_classes_errors(tmp_path):
    from ganforge.config import ConfigError
    from ganforge.tasks import resolve

    with pytest.raises(DataError, match=r"^data\.classes: unknown class '12'; 'mnist' has the classes 0, 1, .*, 9$"):
        load_dataset(cfg(classes=["5", "12"]))
    save(tmp_path / "a.png", rgb(8, 8, 1))
    with pytest.raises(DataError, match=r"^data\.classes: .* has no class labels"):
        load_dataset(folder_cfg(tmp_path, classes=["a"]))
    with pytest.raises(ConfigError, match=r"^data\.classes: expected a list of different classes"):
        resolve(None, ["data.classes=[5, 5]"])
    with pytest.raises(ConfigError, match=r"^data\.classes: expected a list"):
        resolve(None, ["data.classes=5"])
    assert resolve(None, ["data.classes=[5, 6]"]).data.classes == ["5", "6"]
