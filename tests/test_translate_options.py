"""The ``translate`` task's training options ``translate.d_steps`` (several discriminator updates per generator
update; exact resume: tests/test_translate.py) and ``translate.upsample`` (resize + convolution instead of
transposed convolutions)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge import runs
from ganforge.errors import ConfigError
from ganforge.tasks.translate.networks import build
from tests.test_translate import TINY  # the tiny translation config


@pytest.fixture(scope="module")
def unpaired(tmp_path_factory) -> Path:
    """Grey 16x16 domains: unpaired (10 A images, 7 B images) and, in paired/, 8 pairs (same names)."""
    root = tmp_path_factory.mktemp("opt")
    g = np.random.default_rng(0)
    for side, n, name in (("A", 10, "A{}"), ("B", 7, "B{}"), ("paired/A", 8, "{}"), ("paired/B", 8, "{}")):
        (root / side).mkdir(parents=True)
        for i, im in enumerate(g.integers(0, 256, (n, 16, 16), dtype=np.uint8)):
            Image.fromarray(im).save(root / side / f"{name.format(i)}.png")
    return root


def _cycle(root: Path):
    return TINY + [
        "translate.method=cyclegan",
        "data.dataset=unpaired",
        f"data.root={root}",
        "translate.pool_size=3",
        "translate.crop_size=8",
        "data.hflip=true",
    ]


def _adam_steps(state, name: str) -> set:
    return {int(s["step"]) for s in state[name]["state"].values()}


@pytest.mark.parametrize("method", ["cyclegan", "pix2pix"])
def test_d_steps_updates_the_discriminators_that_many_times_per_step(unpaired, tmp_path, method):
    root = unpaired
    if method == "cyclegan":
        o = _cycle(root)
    else:
        o = TINY + ["data.dataset=paired", f"data.root={root / 'paired'}", "data.hflip=true"]
    run = ganforge.train(overrides=o + ["train.steps=2", "translate.d_steps=3"], runs_dir=tmp_path)
    s = runs.load_state(runs.open_checkpoint(run).folder)
    assert _adam_steps(s, "opt_g") == {2} and _adam_steps(s, "opt_d") == {6}
    with pytest.raises(ConfigError, match=r"^translate\.d_steps: expected a positive number, got 0$"):
        ganforge.train(overrides=o + ["translate.d_steps=0"], runs_dir=tmp_path)


@pytest.mark.parametrize("arch", ["resnet", "unet"])
def test_resize_upsampling_has_no_transposed_convolutions_and_no_checkerboard(arch):
    torch.manual_seed(0)
    deconv = build(arch, 1, 1, (32, 32), width=4, blocks=1, dropout=0.0)
    resize = build(arch, 1, 1, (32, 32), width=4, blocks=1, dropout=0.0, upsample="resize")
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in deconv.modules())
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in resize.modules())
    # the first 2x upsampling alone, on a constant map: the transposed convolution (stride 2) gives each output
    # pixel a different subset of its taps by parity (a checkerboard); nearest resize + conv a constant interior
    ups = [m for m in resize.modules() if isinstance(m, torch.nn.Sequential) and isinstance(m[0], torch.nn.Upsample)]
    decs = [m for m in deconv.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    up, dec = ups[0], decs[0]
    if True:
        c_in = dec.in_channels
        for p in (*up.parameters(), *dec.parameters()):
            torch.nn.init.normal_(p)
        x = torch.ones(1, c_in, 8, 8)
        yr, yd = up(x)[..., 2:-2, 2:-2], dec(x)[..., 2:-2, 2:-2]  # [1, c_out, 12, 12] interiors
        assert yr.std(dim=(2, 3)).max() < 1e-5
        assert (yd[..., 0::2, 0::2] - yd[..., 1::2, 1::2]).abs().mean() > 0.1


def test_resize_upsampling_trains_loads_and_is_checked(unpaired, tmp_path):
    run = ganforge.train(overrides=_cycle(unpaired) + ["train.steps=2", "translate.upsample=resize"], runs_dir=tmp_path)
    h = ganforge.load(run)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in h.network("b2a").modules())
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 1, 20, 24), dtype=np.uint8))
    assert h.translate(x, "a2b").shape == (2, 1, 20, 24)
    with pytest.raises(
        ConfigError,
        match=r"^translate\.upsample: 'bilinear' is not allowed; choose one of: deconv, "
        r"resize$",
    ):
        ganforge.train(overrides=_cycle(unpaired) + ["translate.upsample=bilinear"], runs_dir=tmp_path)


def test_lowres_l1_compares_only_the_pooled_images():
    from ganforge.tasks.translate.losses import lowres_l1

    g = torch.Generator().manual_seed(0)
    inp = torch.rand(2, 1, 10, 12, generator=g) * 2 - 1
    # detail that averages to zero in every 2x2 cell: invisible to the term at factor 2, not at factor 1
    checker = 0.3 * ((torch.arange(10)[:, None] + torch.arange(12)[None, :]) % 2 * 2 - 1).float()
    assert lowres_l1(inp + checker, inp, 2).item() == pytest.approx(0.0, abs=1e-6)
    assert lowres_l1(inp + checker, inp, 1).item() == pytest.approx(0.3, abs=1e-6)
    # sides that are no multiple of the factor: replicated up (10x12 -> 12x12 at factor 4); reference by hand
    out = torch.rand(2, 1, 10, 12, generator=g) * 2 - 1
    pad = lambda x: torch.cat([x, x[:, :, -1:].expand(-1, -1, 2, -1)], 2)  # noqa: E731
    ref = (
        (pad(out).reshape(2, 1, 3, 4, 3, 4).mean((3, 5)) - pad(inp).reshape(2, 1, 3, 4, 3, 4).mean((3, 5))).abs().mean()
    )
    assert lowres_l1(out, inp, 4).item() == pytest.approx(ref.item(), abs=1e-6)
    # grey against colour: channel means
    col = torch.rand(2, 3, 8, 8, generator=g)
    assert lowres_l1(col, col.mean(1, keepdim=True), 4).item() == pytest.approx(0.0, abs=1e-6)


def test_lowres_max_pool_keeps_where_the_strokes_are_not_their_thickness():
    from ganforge.tasks.translate.losses import lowres_l1

    bg = -torch.ones(1, 1, 8, 8)
    thin, thick, moved = bg.clone(), bg.clone(), bg.clone()
    thin[:, :, :, 1] = 1.0  # a one-pixel vertical stroke in the left 4x4 cells
    thick[:, :, :, 0:3] = 1.0  # the same stroke, three pixels thick
    moved[:, :, :, 5] = 1.0  # a thin stroke in the right cells instead
    assert lowres_l1(thick, thin, 4, "max").item() == pytest.approx(0.0, abs=1e-6)
    # avg: the left cells' means go from -0.5 (4 of 16 pixels lit) to 0.5 (12 of 16): 1.0 in 2 of the 4 cells
    assert lowres_l1(thick, thin, 4, "avg").item() == pytest.approx(0.5, abs=1e-6)
    assert lowres_l1(moved, thin, 4, "max").item() == pytest.approx(2.0, abs=1e-6)  # every cell's max flips
    # max: each 4x4 cell's brightest pixel; sides replicated up as for avg (reference by hand)
    g = torch.Generator().manual_seed(1)
    out, inp = torch.rand(2, 1, 10, 12, generator=g), torch.rand(2, 1, 10, 12, generator=g)
    pad = lambda x: torch.cat([x, x[:, :, -1:].expand(-1, -1, 2, -1)], 2)  # noqa: E731
    cell_max = lambda x: pad(x).reshape(2, 1, 3, 4, 3, 4).amax((3, 5))  # noqa: E731
    assert lowres_l1(out, inp, 4, "max").item() == pytest.approx(
        (cell_max(out) - cell_max(inp)).abs().mean().item(), abs=1e-6
    )


def test_lowres_weight_adds_its_term_and_is_checked(unpaired, tmp_path):
    run = ganforge.train(
        overrides=_cycle(unpaired)
        + ["train.steps=1", "translate.lowres_weight=5", "translate.lowres_factor=2", "translate.lowres_pool=max"],
        runs_dir=tmp_path,
    )
    import json

    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("lowres", 0) > 0 for r in recs)
    with pytest.raises(ConfigError, match=r"^translate\.lowres_weight: "):
        ganforge.train(overrides=_cycle(unpaired) + ["translate.lowres_weight=-1"], runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^translate\.lowres_factor: expected a positive number, got 0$"):
        ganforge.train(overrides=_cycle(unpaired) + ["translate.lowres_factor=0"], runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^translate\.lowres_pool: 'min' is not allowed; choose one of: avg, max$"):
        ganforge.train(overrides=_cycle(unpaired) + ["translate.lowres_pool=min"], runs_dir=tmp_path)


def test_cycle_noise_enters_the_cycle_only_and_is_checked(unpaired, tmp_path):
    from safetensors.torch import load_file

    def trained(noise: float):
        run = ganforge.train(
            overrides=_cycle(unpaired) + ["train.steps=1", f"translate.cycle_noise={noise}"],
            runs_dir=tmp_path / str(noise),
        )
        c = runs.open_checkpoint(run)
        return {f.name: load_file(str(f)) for f in sorted(c.folder.glob("*.safetensors"))}

    a, b = trained(0.0), trained(0.5)
    gen = [n for n in a if n.startswith("generator") and "ema" not in n]
    assert gen and all(
        any(not torch.equal(a[n][k], b[n][k]) for k in a[n]) for n in gen
    )  # the cycle's gradient changed
    # the discriminators are updated on the translations themselves (no noise): same first step, same weights
    for n in (n for n in a if n.startswith("discriminator")):
        assert all(torch.equal(a[n][k], b[n][k]) for k in a[n]), n
    with pytest.raises(ConfigError, match=r"^translate\.cycle_noise: expected a number >= 0, got -0\.1$"):
        ganforge.train(overrides=_cycle(unpaired) + ["translate.cycle_noise=-0.1"], runs_dir=tmp_path)
