"""Invisible watermarks with a ``task=watermark`` run: embed a message, detect a key, extract the message.

Messages are BCH-coded (:class:`MessageCode`); :func:`detect` tests an image against a key (binomial and
soft p-values over several readings, Bonferroni-corrected). Images are paths, PIL images or uint8 arrays
of any size, grey or colour (alpha kept); the mark goes on the luminance. Problems raise a one-line
:class:`WatermarkError` (or ``ImageError`` / ``RunError``). Python::

    from ganforge.apps import watermark as wm
    h = wm.load_watermarker("runs/00007-photos128-wm32")
    marked = wm.embed(h, "photo.png", "gf")  # uint8 array, same shape and mode as the input
    wm.detect(h, marked, key="gf")  # {"detected": True, "p_value": 9.3e-10, "matches": 32, ...}
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ganforge import runs
from ganforge.errors import ImageError, WatermarkError
from ganforge.imaging import (
    IMAGE_SUFFIXES,
    FolderResults,
    ImageLike,
    Skipped,
    check_writable,
    images_in,
    join_alpha,
    load_image,
    save_image,
    source_name,
    split_alpha,
    usable_images,
)
from ganforge.tasks.watermark.config import MIN_SIDE, WatermarkConfig

__all__ = [
    "WatermarkError",
    "MessageCode",
    "DEFAULT_FPR",
    "DEFAULT_MESSAGE",
    "MIN_SIDE",
    "load_watermarker",
    "marker",
    "message_code",
    "embed",
    "mark_batch",
    "extract",
    "detect",
    "p_value",
    "soft_p_value",
    "detection_p_value",
    "threshold",
    "embed_folder",
    "read_folder",
]

DEFAULT_FPR = 1e-6
TESTS = ("combined", "soft", "binomial")  # detection tests (detect(test=...)); the first is the default
SOFT_CLIP = 8.0  # logits are clipped to [-8, 8] in the soft statistic (beyond that a bit is certain)
SOFT_STEPS = 64  # weights are rounded down to multiples of 1/SOFT_STEPS for the exact tail
MASK_SEED = 0x6A6F  # the fixed scrambling mask's seed


# ---- message coding ------------------------------------------------------------------------------


class MessageCode:
    """BCH coding of a ``payload_bytes``-byte payload into ``n_bits`` bits (``bchlib``), with a fixed mask.

    The payload is ``n_bits // 16`` bytes unless given (2 for 32 bits, 4 for 64), with as many correctable
    errors as fit in the remaining bits (3 for 32 bits, 5 for 64). The codeword is XORed with a fixed
    pseudo-random mask, so that a message of zeros is not a blank pattern."""

    def __init__(self, n_bits: int, payload_bytes: Optional[int] = None):
        import bchlib

        self.n_bits = int(n_bits)
        self.payload_bytes = max(1, self.n_bits // 16) if payload_bytes is None else int(payload_bytes)
        data_bits = 8 * self.payload_bytes
        if data_bits > self.n_bits:
            raise WatermarkError(f"a {self.n_bits}-bit watermark cannot carry {self.payload_bytes} bytes")
        best = None  # (t, m) with the most correctable errors that fits
        for m in range(5, 11):
            t = 1
            while True:
                try:
                    b = bchlib.BCH(t, m=m)
                except (ValueError, RuntimeError):
                    break
                if data_bits + b.ecc_bits > min(self.n_bits, b.n):
                    break
                if best is None or t > best[0]:
                    best = (t, m)
                t += 1
        self.bch = bchlib.BCH(best[0], m=best[1]) if best else None
        self.t = best[0] if best else 0
        self.ecc_bits = self.bch.ecc_bits if self.bch else 0
        self.mask = np.random.default_rng(MASK_SEED).integers(0, 2, self.n_bits).astype(np.uint8)

    def __repr__(self) -> str:
        return f"MessageCode({self.n_bits} bits: {self.payload_bytes} payload bytes, BCH corrects {self.t})"

    def parse(self, message: Union[str, bytes]) -> bytes:
        """A message (text, ``0x``-prefixed hex, or bytes) -> the payload, zero-padded to ``payload_bytes``."""
        if isinstance(message, (bytes, bytearray)):
            raw = bytes(message)
        elif isinstance(message, str):
            if message.lower().startswith("0x"):
                try:
                    raw = bytes.fromhex(message[2:])
                except ValueError:
                    raise WatermarkError(
                        f"message {message!r}: not valid hex after '0x' (expected an even number of 0-9a-f digits)"
                    ) from None
            else:
                raw = message.encode("utf-8")
        else:
            raise WatermarkError(f"message: expected text, 0x-hex or bytes, got {type(message).__name__}")
        if not raw:
            raise WatermarkError(f"message: empty; give text or 0x-hex of at most {self.payload_bytes} bytes")
        if len(raw) > self.payload_bytes:
            raise WatermarkError(
                f"message {message!r} is {len(raw)} bytes, more than this model's capacity of "
                f"{self.payload_bytes} bytes ({self.n_bits} bits with error correction); "
                f"shorten it or train a model with more watermark.bits"
            )
        return raw + bytes(self.payload_bytes - len(raw))

    def encode(self, message: Union[str, bytes]) -> np.ndarray:
        """The ``n_bits`` bits (uint8 0/1) that carry ``message``."""
        data = self.parse(message)
        bits = np.unpackbits(np.frombuffer(data, np.uint8))
        if self.bch is not None:
            ecc = np.unpackbits(np.frombuffer(bytes(self.bch.encode(bytearray(data))), np.uint8))[: self.ecc_bits]
            bits = np.concatenate([bits, ecc])
        bits = np.concatenate([bits, np.zeros(self.n_bits - bits.size, np.uint8)])
        return bits ^ self.mask

    def decode(self, bits: np.ndarray) -> Tuple[bytes, int, bool]:
        """Bits read from an image -> (payload, corrected errors, ok)."""
        b = (np.asarray(bits).astype(np.uint8) & 1) ^ self.mask
        k = 8 * self.payload_bytes
        data = bytearray(np.packbits(b[:k]).tobytes())
        if self.bch is None:
            return bytes(data), 0, True
        ecc = bytearray(
            np.packbits(
                np.concatenate([b[k : k + self.ecc_bits], np.zeros(8 * self.bch.ecc_bytes - self.ecc_bits, np.uint8)])
            ).tobytes()
        )
        nerr = self.bch.decode(data, ecc)
        if nerr < 0:
            return bytes(data), 0, False
        self.bch.correct(data, ecc)
        return bytes(data), int(nerr), True


@lru_cache(maxsize=8)
def message_code(n_bits: int) -> MessageCode:
    """The :class:`MessageCode` of an ``n_bits`` model."""
    return MessageCode(n_bits)


def payload_text(payload: bytes) -> Optional[str]:
    """The payload as text (trailing zero bytes dropped), or None when it is not UTF-8."""
    try:
        return payload.rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---- statistics ------------------------------------------------------------------------------------


def p_value(matches: int, n: int) -> float:
    """P(X >= matches) for X ~ Binomial(n, 1/2): how likely an unmarked image matches this well."""
    k = max(0, int(matches))
    return sum(math.comb(n, j) for j in range(k, n + 1)) / 2**n  # exact (integers), then one division


def threshold(n: int, fpr: float = DEFAULT_FPR, tests: int = 1) -> int:
    """The fewest matching bits of ``n`` whose p-value, Bonferroni-corrected for ``tests`` readings, is at
    most ``fpr`` (n + 1 when none is)."""
    for k in range(n + 1):
        if min(1.0, tests * p_value(k, n)) <= fpr:
            return k
    return n + 1


def soft_p_value(logits: np.ndarray, expected: np.ndarray, steps: int = SOFT_STEPS) -> float:
    """The soft test's p-value: ``P(sum_i e_i a_i >= T)`` with ``a = |clip(z)|``, ``T = sum_i s_i clip(z)``
    (``z``: ``logits`` [n]; ``s``: ``expected`` bits [n] as +-1) and independent fair signs ``e_i``: what ``T``
    is worth on an image that does not carry the key. A wrong bit read with little confidence costs it
    little, where the binomial count (:func:`p_value`) loses a whole bit.

    Computed exactly on weights rounded down to multiples of ``1/steps`` (``k_i = floor(a_i * steps)``):
    ``sum e_i a_i <= sum e_i k_i / steps + n / steps``, so the tail of the rounded sum at ``T - n / steps``
    (a convolution over integers) is an upper bound: the test never claims more than it has. With all
    ``|z_i| = 1`` it is the binomial tail of the matches (while ``n < 2 steps``)."""
    z = np.clip(np.asarray(logits, dtype=np.float64).ravel(), -SOFT_CLIP, SOFT_CLIP)
    s = np.asarray(expected, dtype=np.float64).ravel() * 2 - 1
    if z.shape != s.shape:
        raise ValueError(f"soft_p_value: {z.size} logits for {s.size} expected bits")
    t = float((s * z).sum()) - z.size / steps
    k = np.floor(np.abs(z) * steps).astype(np.int64)
    total = int(k.sum())
    dist = np.zeros(2 * total + 1)  # P(sum e_i k_i = v - total)
    dist[total] = 1.0
    for ki in k[k > 0]:
        nxt = np.zeros_like(dist)
        nxt[ki:] += 0.5 * dist[:-ki]
        nxt[:-ki] += 0.5 * dist[ki:]
        dist = nxt
    first = math.ceil(t * steps - 1e-9) + total  # the smallest rounded sum v - total with v / steps >= t
    return float(min(1.0, dist[max(0, first) :].sum())) if first <= 2 * total else 0.0


# ---- the model ---------------------------------------------------------------------------------------


def _is_watermarker(handle: Any) -> bool:
    return hasattr(handle, "logits_search") and hasattr(handle, "embed") and hasattr(handle, "bits")


def load_watermarker(model: Any, checkpoint: str = "last", device: str = "cpu"):
    """The :class:`~ganforge.tasks.watermark.handle.WatermarkHandle` of ``model`` (a run folder, a checkpoint
    folder, or a handle already loaded)."""
    if isinstance(model, (str, Path)):
        from ganforge.api import load

        path = runs.resolve(model)
        if runs.is_checkpoint_dir(path):
            checkpoint = str(path)
        model = load(path, checkpoint=checkpoint, device=device)
        if not _is_watermarker(model):
            raise WatermarkError(
                f"'{path}' trained task {model.task!r}, which is not a watermark; train one with "
                "'ganforge train watermark data.root=DIR' (task=watermark)"
            )
        return model
    if _is_watermarker(model):
        return model
    raise WatermarkError(f"model: expected a watermark run folder or its handle, got {type(model).__name__}")


def _pixels(image: ImageLike) -> Tuple[np.ndarray, Optional[np.ndarray], str, str]:
    """(uint8 [H, W, C] with C 1 or 3, alpha or None, PIL mode, the image's name for messages)."""
    name = source_name(image)
    im = load_image(image)
    base, alpha = split_alpha(im)
    h, w = base.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise WatermarkError(
            f"image {name} is {w}x{h}: too small to carry a watermark; images need at least {MIN_SIDE} pixels a side"
        )
    return base, alpha, im.mode, name


def _batch(base: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(base)).permute(2, 0, 1)[None]  # [1, C, H, W]


def _check_strength(strength: float) -> float:
    if not isinstance(strength, (int, float)) or not 0 < float(strength) <= 10:
        raise WatermarkError(f"strength {strength!r}: expected a number in (0, 10] (1 = the model's trained PSNR)")
    return float(strength)


def embed(model: Any, image: ImageLike, message: Union[str, bytes], strength: float = 1.0) -> np.ndarray:
    """Mark ``image`` with ``message``: a uint8 array of the same shape as the image (H x W for grey,
    H x W x 2/3/4 with alpha), the residual on its luminance at ``strength`` (PSNR drops by
    ``20 log10(strength)`` dB)."""
    h = load_watermarker(model)
    strength = _check_strength(strength)
    bits = message_code(h.bits).encode(message)
    base, alpha, mode, _ = _pixels(image)
    out = h.embed(_batch(base), torch.from_numpy(bits.astype(np.float32)), strength)[0].permute(1, 2, 0).numpy()
    return np.asarray(join_alpha(out, alpha, mode))


def mark_batch(
    model: Any, images: Union[torch.Tensor, np.ndarray], message: Union[str, bytes], strength: float = 1.0
) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` (C = 1 or 3) -> the same images marked with ``message`` (what
    ``ganforge sample --watermark`` does to every generated image)."""
    h = load_watermarker(model)
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise WatermarkError(
            f"images: expected uint8 [N, C, H, W] with C 1 or 3, got {images.dtype} {tuple(images.shape)}"
        )
    if min(images.shape[2:]) < MIN_SIDE:
        raise WatermarkError(
            f"images of {images.shape[3]}x{images.shape[2]} are too small to carry a watermark; "
            f"at least {MIN_SIDE} pixels a side are needed"
        )
    bits = torch.from_numpy(message_code(h.bits).encode(message).astype(np.float32))
    return h.embed(images, bits, _check_strength(strength))


def read_all(model: Any, image: ImageLike) -> np.ndarray:
    """Bit logits ``[K, n]`` of ``image``, one row per reading of
    :meth:`~ganforge.tasks.watermark.handle.WatermarkHandle.logits_search` (as it is, and as centred crops)."""
    h = load_watermarker(model)
    base, _, _, _ = _pixels(image)
    return h.logits_search(_batch(base))[0].numpy()


CROP_MARGIN = (
    WatermarkConfig.crop_margin
)  # a crop reading replaces the direct one when it is this much more confident (models' default)


def best_reading(logits: np.ndarray, margin: float = CROP_MARGIN) -> int:
    """Which row of ``logits`` ``[K, n]`` (row 0: the image as it is) :func:`extract` reports: the most
    confident crop reading (mean |logit|) when it beats the direct reading's confidence by ``margin``
    (the model's ``watermark.crop_margin``, :data:`CROP_MARGIN` unless trained otherwise), else the direct
    reading (1.1 was chosen on validation photographs: it keeps small and rotated images on the direct
    reading and still reads centred crops; a larger margin reads crops less readily)."""
    conf = np.abs(logits).mean(1)
    if logits.shape[0] < 2:
        return 0
    j = int(conf[1:].argmax()) + 1
    return j if conf[j] > margin * conf[0] else 0


def read_bits(model: Any, image: ImageLike) -> Tuple[np.ndarray, np.ndarray]:
    """(bits uint8 [n], logits float [n]) read from ``image`` (the reading :func:`best_reading` picks)."""
    h = load_watermarker(model)
    logits = read_all(h, image)
    best = logits[best_reading(logits, h.crop_margin)]
    return (best > 0).astype(np.uint8), best


def _bitstring(bits: np.ndarray) -> str:
    return "".join("1" if b else "0" for b in bits)


def extract(model: Any, image: ImageLike) -> Dict[str, Any]:
    """Read the message of ``image``: ``bits`` (the raw bits, a string of 0/1), ``hex`` and ``text`` of the
    corrected payload (``text`` None when not UTF-8), ``corrected`` (bit errors fixed), ``ok`` (False:
    too many errors to correct, the payload is the uncorrected reading) and ``confidence`` (mean |logit|)."""
    h = load_watermarker(model)
    bits, logits = read_bits(h, image)
    code = message_code(h.bits)
    payload, corrected, ok = code.decode(bits)
    return {
        "bits": _bitstring(bits),
        "hex": payload.hex(),
        "text": payload_text(payload),
        "corrected": corrected,
        "ok": ok,
        "n_bits": h.bits,
        "ecc_t": code.t,
        "confidence": round(float(np.abs(logits).mean()), 4),
    }


def detect(
    model: Any, image: ImageLike, key: Union[str, bytes], fpr: float = DEFAULT_FPR, test: str = "combined"
) -> Dict[str, Any]:
    """Test whether ``image`` carries ``key`` (the embedded message): ``p_value`` of the ``test`` (``combined``,
    the default: the better of the soft and the binomial statistic; ``soft``: bits weighed by the decoder's
    confidence, :func:`soft_p_value`; ``binomial``: the count of matching bits, :func:`p_value`) for the
    best of the readings, Bonferroni-corrected for every p-value looked at; ``detected`` (p-value <= ``fpr``);
    ``matches`` of ``n_bits`` in the reading with the most; ``threshold`` (the matches that pass on their own
    at ``fpr``: 30 of 32), and the raw ``bits`` of that reading.

    The image is read four ways: as it is and as centred crops of 10%, 17.5% and 25% resized back
    (:data:`~ganforge.tasks.watermark.attacks.SEARCH_CUTS`). ``combined`` multiplies the smallest of its
    8 p-values by 8, ``soft`` and ``binomial`` the smallest of 4 by 4; at the default ``fpr`` of 1e-6 the
    count alone passes at 30 of 32 bits (8 x 1.2e-7 = 9.9e-7)."""
    if not isinstance(fpr, (int, float)) or not 0 < fpr < 1:
        raise WatermarkError(f"fpr {fpr!r}: expected a false-positive rate between 0 and 1 (e.g. 1e-6)")
    h = load_watermarker(model)
    expected = message_code(h.bits).encode(key)
    logits = read_all(h, image)  # [K, n]
    readings = (logits > 0).astype(np.uint8)
    per = (readings == expected).sum(1)
    p, looked = detection_p_value(logits, expected, test)
    best = int(per.argmax())
    return {
        "detected": bool(p <= fpr),
        "p_value": p,
        "test": test,
        "matches": int(per[best]),
        "n_bits": h.bits,
        "threshold": threshold(h.bits, fpr, looked),
        "fpr": fpr,
        "readings": len(logits),
        "bits": _bitstring(readings[best]),
    }


def detection_p_value(logits: np.ndarray, expected: np.ndarray, test: str = "combined") -> Tuple[float, int]:
    """(the Bonferroni-corrected p-value of ``test`` for the readings ``logits`` [K, n] against the key's
    codeword ``expected`` [n], the number of p-values it looked at): what :func:`detect` decides by."""
    if test not in TESTS:
        raise WatermarkError(f"test {test!r}: expected one of {', '.join(TESTS)}")
    ps = []
    if test in ("combined", "soft"):
        ps += [soft_p_value(z, expected) for z in logits]
    if test in ("combined", "binomial"):
        ps += [p_value(int(m), len(expected)) for m in ((logits > 0) == expected).sum(1)]
    return min(1.0, len(ps) * min(ps)), len(ps)


# ---- files and folders ---------------------------------------------------------------------------------


@dataclass
class FileResult:
    path: Path
    out: Optional[Path]
    info: Dict[str, Any]
    seconds: float


def embed_file(
    model: Any, image: Union[str, Path], out: Union[str, Path], message: Union[str, bytes], strength: float = 1.0
) -> Path:
    """Mark the image file ``image`` and write it to ``out`` (PNG unless the suffix says otherwise)."""
    from PIL import Image

    marked = embed(model, image, message, strength)
    mode = load_image(image).mode
    return save_image(Image.fromarray(marked, mode), out)


def _min_side(path: Path, im: Any) -> None:
    """A folder mode's check of each image: big enough to carry a watermark."""
    if min(im.size) < MIN_SIDE:
        raise WatermarkError(
            f"image '{path}' is {im.width}x{im.height}: too small to carry a watermark; images need at least "
            f"{MIN_SIDE} pixels a side"
        )


def _folder_files(folder: Union[str, Path], skip_bad: bool) -> Tuple[List[Path], List[Skipped]]:
    """The images of a folder mode, each decoded and big enough before any work (:func:`usable_images`)."""
    folder = Path(folder).expanduser()
    files = images_in(folder)
    if not files:
        raise ImageError(f"image folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return usable_images(files, skip_bad, _min_side)


def embed_folder(
    model: Any,
    folder: Union[str, Path],
    out: Union[str, Path],
    message: Union[str, bytes],
    strength: float = 1.0,
    progress: Optional[Callable[[int, int, FileResult], None]] = None,
    skip_bad: bool = False,
) -> FolderResults:
    """Mark every image of ``folder`` into the folder ``out`` (PNG files named like the inputs). Every
    image is decoded and checked first: an unusable one is an error before anything is written, or with
    ``skip_bad`` is left out and listed in the result's ``skipped`` (path and reason)."""
    h = load_watermarker(model)
    message_code(h.bits).parse(message)  # a message that does not fit fails before any work
    _check_strength(strength)
    out = check_writable(out, "output folder", folder=True)
    files, skipped = _folder_files(folder, skip_bad)
    results = FolderResults(skipped=skipped)
    for i, p in enumerate(files):
        t0 = time.perf_counter()
        dest = embed_file(h, p, out / f"{p.stem}.png", message, strength)
        results.append(FileResult(p, dest, {}, time.perf_counter() - t0))
        if progress:
            progress(i, len(files), results[-1])
    return results


def read_folder(
    model: Any,
    folder: Union[str, Path],
    key: Optional[Union[str, bytes]] = None,
    fpr: float = DEFAULT_FPR,
    test: str = "combined",
    progress: Optional[Callable[[int, int, FileResult], None]] = None,
    skip_bad: bool = False,
) -> FolderResults:
    """:func:`detect` (with ``key``) or :func:`extract` (without) on every image of ``folder``; every image
    is decoded and checked first (an unusable one is an error before any is read, or with ``skip_bad`` is
    left out and listed in the result's ``skipped``)."""
    h = load_watermarker(model)
    if key is not None:
        message_code(h.bits).parse(key)
    files, skipped = _folder_files(folder, skip_bad)
    results = FolderResults(skipped=skipped)
    for i, p in enumerate(files):
        t0 = time.perf_counter()
        info = detect(h, p, key, fpr, test) if key is not None else extract(h, p)
        results.append(FileResult(p, None, info, time.perf_counter() - t0))
        if progress:
            progress(i, len(files), results[-1])
    return results


# ---- sampling -------------------------------------------------------------------------------------------

DEFAULT_MESSAGE = "gf"  # what ganforge sample --watermark embeds unless told


def marker(
    model: Any, message: Optional[str] = None, writer: Any = None, device: str = "cpu"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The ``mark`` function ``ganforge sample --watermark WM_RUN --message M`` passes to the sample writer:
    uint8 ``[N, C, H, W]`` -> the same images marked with ``message`` (default :data:`DEFAULT_MESSAGE`).
    Checks everything before any sampling: the run, the message, and that ``writer`` writes images."""
    from ganforge.errors import UsageError

    if model is None:
        raise UsageError("--message applies with --watermark WM_RUN (the watermark run that marks the samples)")
    if writer is not None and "mark" not in getattr(writer.write_samples, "__code__").co_varnames:
        raise UsageError(
            f"--watermark: this run's samples are written by {writer.__name__}, which cannot mark them; "
            "mark the written images with 'ganforge watermark embed --image FOLDER' instead"
        )
    h = load_watermarker(model, device=device)
    msg = DEFAULT_MESSAGE if message is None else message
    message_code(h.bits).parse(msg)
    return lambda images: mark_batch(h, images, msg)
