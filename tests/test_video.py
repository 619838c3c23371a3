"""The video task (issue 18): Moving MNIST, clip folders, the MoCoGAN-style networks, the run folder's
animated samples, ``ganforge sample`` to GIF/MP4/.npz/folders, and the one-line errors.
(Tiny training, exact resume and loading are tested for every task in test_tasks.py.)"""

import numpy as np
import pytest
import torch

import ganforge
from ganforge.cli import main
from ganforge.config import DataConfig
from ganforge.data import DATASETS, load_dataset
from ganforge.errors import ConfigError, DataError, ModelBuildError
from ganforge.tasks import get_task, resolve
from ganforge.tasks.video.app import write_clips
from ganforge.tasks.video.data import load_clip_folder, load_clips, moving_mnist, read_clip
from ganforge.tasks.video.networks import VideoDiscriminator, VideoGenerator

TINY = [
    "task=video",
    "data.limit=32",
    "train.batch_size=8",
    "train.progress=false",
    "train.log_every=1",
    "train.sample_every=2",
    "train.checkpoint_every=2",
    "train.sample_count=4",
    "train.minutes=null",
    *get_task("video").tiny,
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return ganforge.train(
        overrides=TINY + ["train.steps=2", "train.tensorboard=true"], runs_dir=tmp_path_factory.mktemp("runs")
    )


# ---- data ------------------------------------------------------------------------------------------


def test_moving_mnist_is_seeded_bounces_inside_the_canvas_and_keeps_its_digit():
    a = moving_mnist(20, 12, 32, seed=3)
    assert a.clips.shape == (20, 12, 1, 32, 32) and a.clips.dtype == torch.uint8 and a.labels.shape == (20, 1)
    assert torch.equal(a.clips, moving_mnist(20, 12, 32, seed=3).clips)
    assert not torch.equal(a.clips, moving_mnist(20, 12, 32, seed=4).clips)
    mass = a.clips.float().sum((2, 3, 4))  # [N, T]: the whole digit is inside the canvas in every frame
    assert torch.allclose(mass, mass[:, :1].expand_as(mass))
    ys = torch.arange(32.0)
    com = (a.clips[:, :, 0].float().sum(3) * ys).sum(2) / mass  # [N, T] vertical centre of mass
    step = (com[:, 1:] - com[:, :-1]).abs()
    assert step.max() <= 2.0 + 1.0 and step.mean() > 0.3  # at most the top speed (plus rounding), and moving
    two = moving_mnist(5, 4, 64, digits=2, seed=0)
    assert two.labels.shape == (5, 2) and two.clips.shape[-1] == 64


def test_moving_mnist_frames_are_an_image_dataset():
    data = load_dataset(DataConfig(dataset="moving-mnist", size=[32, 32], limit=40))  # frames of 3 clips, 40 kept
    assert "moving-mnist" in DATASETS and data.images.shape == (40, 1, 32, 32)
    clips = load_clips(DataConfig(dataset="moving-mnist", size=[32, 32], limit=3)).clips
    assert torch.equal(data.images, clips.reshape(48, 1, 32, 32)[:40])


def test_clip_folder_reads_gif_frame_folders_and_mp4(tmp_path):
    clips = moving_mnist(3, 8, 16, seed=1).clips
    root = tmp_path / "clips"
    write_clips(clips[:1], root / "a.gif")
    write_clips(clips[1:2], tmp_path / "f")  # f/000000/frame_000.png ...: a folder of numbered frames
    (tmp_path / "f" / "000000").rename(root / "b")
    write_clips(clips[2:3], root / "c.mp4")
    (root / "notes.txt").write_text("not a clip")
    data = load_clip_folder(DataConfig(dataset="clips", root=str(root)), frames=4)
    assert data.clips.shape == (6, 4, 1, 16, 16)  # 8 frames each -> two windows of 4
    assert torch.equal(data.clips[:2].reshape(8, 1, 16, 16), clips[0])
    assert torch.equal(data.clips[2:4].reshape(8, 1, 16, 16), clips[1])
    mp4 = data.clips[4:].reshape(8, 1, 16, 16).float()
    assert (mp4 - clips[2].float()).abs().mean() < 4  # H.264 is lossy, but close


def test_clip_folder_errors_are_one_line(tmp_path):
    root = tmp_path / "short"
    write_clips(moving_mnist(1, 3, 16).clips, root / "s.gif")
    with pytest.raises(DataError, match=r"^clip '.*s\.gif' has 3 frames; clips need at least video\.frames=4$"):
        load_clip_folder(DataConfig(dataset="clips", root=str(root)), frames=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^data\.root: '.*empty' holds no clips"):
        load_clip_folder(DataConfig(dataset="clips", root=str(tmp_path / "empty")), frames=4)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.gif").write_bytes(b"GIF89a broken")
    with pytest.raises(DataError, match=r"^cannot read clip '.*x\.gif'"):
        load_clip_folder(DataConfig(dataset="clips", root=str(tmp_path / "bad")), frames=4)
    skipped = load_clip_folder(DataConfig(dataset="clips", root=str(root), skip_bad=True), frames=2)
    assert skipped.clips.shape[0] == 1 and not skipped.skipped


def test_config_errors_name_the_key():
    with pytest.raises(
        ConfigError, match=r"^data\.dataset: 'cifar10' is not allowed; choose one of: moving-mnist, clips$"
    ):
        resolve(None, ["task=video", "data.dataset=cifar10"])
    with pytest.raises(ConfigError, match=r"^video\.image_frames=5: at most video\.frames=4$"):
        resolve(None, ["task=video", "video.frames=4", "video.image_frames=5"])
    with pytest.raises(ConfigError, match=r"^video\.motion: 'flow' is not allowed; choose one of: warp, free$"):
        resolve(None, ["task=video", "video.motion=flow"])
    assert resolve(None, ["task=video"]).data.dataset == "moving-mnist"  # the default works offline


# ---- networks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("motion", ["warp", "free"])
def test_generator_shapes_and_motion_is_causal(motion):
    torch.manual_seed(0)
    g = VideoGenerator((1, 16, 16), content_dim=4, motion_dim=2, hidden_dim=4, width=4, motion=motion).eval()
    zc, eps = torch.randn(3, 4), torch.randn(3, 6, 2)
    x = g(zc, eps)
    assert x.shape == (3, 6, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    eps2 = eps.clone()
    eps2[:, 4:] = torch.randn(3, 2, 2)  # changing the noise of frames 4, 5 leaves frames 0..3 as they were
    y = g(zc, eps2)
    assert torch.equal(x[:, :4], y[:, :4]) and not torch.equal(x[:, 4:], y[:, 4:])
    assert g(zc, torch.randn(3, 9, 2)).shape[1] == 9  # any length rolls out


def test_warp_frames_are_the_content_moved():
    torch.manual_seed(0)
    g = VideoGenerator((1, 16, 16), content_dim=4, motion_dim=2, hidden_dim=4, width=4, motion="warp").eval()
    with torch.no_grad():
        g.shift.weight.zero_()
        g.shift.bias.zero_()  # no motion: every frame is the content's sprite
        zc = torch.randn(2, 4)
        x = g(zc, torch.randn(2, 5, 2))
        sprite = g.sprites(zc)  # [2, 1, 16, 16]
    assert torch.allclose(x, sprite[:, None].expand_as(x), atol=1e-5)


def test_snapped_samples_are_exact_whole_pixel_copies_of_the_sprite():
    torch.manual_seed(0)
    g = VideoGenerator((1, 16, 16), content_dim=4, motion_dim=2, hidden_dim=4, width=4, motion="warp", snap=True).eval()
    with torch.no_grad():
        g.shift.weight.mul_(50)  # large, varied shifts
        zc, eps = torch.randn(2, 4), torch.randn(2, 5, 2)
        x = g(zc, eps)
        pad = torch.nn.functional.pad(g.sprites(zc) + 1, (16, 16, 16, 16))  # black around the sprite
        shift = torch.round(torch.tanh(g.shift(g.motion_codes(eps))) * 8).long()  # [2, 5, (dx, dy)] pixels
    assert shift.abs().max() >= 2
    for i in range(2):
        for t in range(5):
            dx, dy = shift[i, t].tolist()
            assert torch.allclose(x[i, t], pad[i, :, 16 - dy : 32 - dy, 16 - dx : 32 - dx] - 1, atol=1e-5)
    g.train()  # training moves by fractions of a pixel, so gradients reach the motion network
    moved = g(zc, eps)
    assert not torch.allclose(moved, x, atol=1e-3)
    moved.mean().backward()
    assert g.shift.weight.grad.abs().sum() > 0 and g.rnn.weight_ih.grad.abs().sum() > 0


def test_two_renders_are_the_sub_pixel_and_the_whole_pixel_clips():
    torch.manual_seed(0)
    g = VideoGenerator((1, 16, 16), content_dim=4, motion_dim=2, hidden_dim=4, width=4, motion="warp", snap=True).eval()
    with torch.no_grad():
        g.shift.weight.mul_(50)
    zc, eps = torch.randn(2, 4), torch.randn(2, 5, 2)
    smooth, whole = g.two_renders(zc, eps)
    assert torch.equal(whole, g(zc, eps))  # what sampling shows
    g.snap = False
    assert torch.equal(smooth, g(zc, eps)) and not torch.allclose(smooth, whole, atol=1e-3)
    whole.square().sum().backward()  # the crisp frames train the sprites, not the shifts
    assert g.sprites.fc[0].weight.grad.abs().sum() > 0
    assert g.shift.weight.grad is None or g.shift.weight.grad.abs().sum() == 0


def test_small_sprites_stay_whole_inside_the_frame():
    torch.manual_seed(0)
    g = VideoGenerator(
        (1, 24, 28), content_dim=4, motion_dim=2, hidden_dim=4, width=4, motion="warp", snap=True, sprite=12
    ).eval()
    assert g.sprites(torch.randn(1, 4)).shape == (1, 1, 12, 12)  # drawn at the sprite's size
    with torch.no_grad():
        g.shift.weight.mul_(500)  # shifts pushed to the bounds
        zc, eps = torch.randn(3, 4), torch.randn(3, 7, 2)
        sprite = g.sprites(zc) + 1  # [3, 1, 12, 12], 0 = black
        x = g(zc, eps) + 1  # [3, 7, 1, 24, 28]
        shift = torch.round(
            torch.tanh(g.shift(g.motion_codes(eps))) * torch.tensor([8.0, 6.0])
        ).long()  # reach (28-12)//2, (24-12)//2
    assert (shift[..., 0].abs().max().item(), shift[..., 1].abs().max().item()) == (8, 6)  # the bounds are reached ...
    for i in range(3):
        for t in range(7):
            dx, dy = shift[i, t].tolist()
            frame = torch.zeros(1, 24, 28)
            frame[:, 6 + dy : 18 + dy, 8 + dx : 20 + dx] = sprite[i]  # ... and the whole sprite is in every frame
            assert torch.allclose(x[i, t], frame, atol=1e-5)
    with pytest.raises(
        ModelBuildError, match=r"^sprite=25: expected 0 \(the frame size\) up to the frame's shorter side 24$"
    ):
        VideoGenerator((1, 24, 28), motion="warp", sprite=25)
    with pytest.raises(
        ModelBuildError, match=r"^sprite=10: a sprite side must be b \* 2\^k with k >= 2 and 3 <= b <= 16, such as 12$"
    ):
        VideoGenerator((1, 24, 28), motion="warp", sprite=10)
    with pytest.raises(ConfigError, match=r"^video\.sprite_size=8: sprites belong to motion=warp, not motion=free$"):
        resolve(None, ["task=video", "video.motion=free", "video.sprite_size=8"])


def test_centred_sprites_sit_where_the_motion_code_puts_them():
    torch.manual_seed(0)
    g = VideoGenerator(
        (1, 16, 16), content_dim=4, motion_dim=2, hidden_dim=4, width=4, motion="warp", centre=True
    ).eval()
    with torch.no_grad():
        g.shift.weight.zero_()
        g.shift.bias.zero_()  # no shift: every sprite's centre of mass moves to the canvas centre
        x = g(torch.randn(3, 4), torch.randn(3, 2, 2)) + 1  # [3, 2, 1, 16, 16], 0 = black
    mass = x.sum((2, 3, 4))
    cy = (x.sum((2, 4)) * torch.arange(16.0)).sum(2) / mass
    cx = (x.sum((2, 3)) * torch.arange(16.0)).sum(2) / mass
    assert torch.allclose(cy, torch.full_like(cy, 7.5), atol=0.75) and torch.allclose(
        cx, torch.full_like(cx, 7.5), atol=0.75
    )


def test_video_discriminator_names_a_wrong_length():
    d = VideoDiscriminator((1, 16, 16), frames=4, width=4)
    assert d(torch.randn(2, 4, 1, 16, 16)).shape == (2,)
    with pytest.raises(ValueError, match="expected clips of 4 frames, got 5"):
        d(torch.randn(2, 5, 1, 16, 16))


# ---- a run: animated samples, TensorBoard video, sampling -----------------------------------------------


def test_run_writes_animated_samples_and_tensorboard_video(run):
    frames = read_clip(run / "samples" / "latest.gif")  # identical frames, which GIF merges, count again
    assert len(frames) == 4 and frames[0].shape == (38, 38, 3)  # 4 clips of 16x16 in a 2x2 grid (2-pixel borders)
    assert (run / "samples" / "latest.png").is_file() and (run / "samples" / "step-00000002.gif").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert "samples_video" in acc.Tags()["images"]
    shot = acc.Images("samples_video")[-1]
    assert shot.encoded_image_string[:6] == b"GIF89a"


def test_sample_cli_writes_gif_mp4_npz_and_folders(run, tmp_path, capsys):
    h = ganforge.load(run)
    ref = h.sample_uint8(3, seed=5)  # [3, 4, 1, 16, 16]
    assert ref.shape == (3, 4, 1, 16, 16) and torch.equal(ref, h.sample_uint8(3, seed=5))
    for name in ("c.npz", "c.gif", "c.mp4", "c.png", "folder"):
        assert main(["sample", str(run), "--n", "3", "--seed", "5", "--out", str(tmp_path / name)]) == 0
    z = np.load(tmp_path / "c.npz")["arr_0"]
    assert (
        z.shape == (3, 4, 16, 16, 1) and z.dtype == np.uint8 and np.array_equal(z, ref.permute(0, 1, 3, 4, 2).numpy())
    )
    assert len(read_clip(tmp_path / "c.gif")) == 4
    import av

    with av.open(str(tmp_path / "c.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264" and sum(1 for _ in c.decode(video=0)) == 4
    back = load_clip_folder(DataConfig(dataset="clips", root=str(tmp_path / "folder")), frames=4)
    assert torch.equal(back.clips, ref)  # a sampled folder is a clip dataset again


def test_sample_cli_errors_for_a_video_run(run, tmp_path, capsys):
    assert main(["sample", str(run), "--out", str(tmp_path / "x.jpg")]) == 2
    assert (
        "expected a .gif or .mp4 file (animated grid), a .npz file, a .png file (strip), or a folder"
        in capsys.readouterr().err
    )
    assert main(["sample", str(run), "--class", "3", "--out", str(tmp_path / "x.gif")]) == 2
    assert "unconditional" in capsys.readouterr().err
