"""Configuration: typed dataclasses, YAML presets and ``key=value`` overrides.

A run is described by one :class:`Config`. It is built from the defaults below, then a
preset (a shipped name such as ``mnist`` or a path to a YAML file), then dotted overrides
(``train.batch_size=128``). Every step is checked: an unknown key names the allowed keys,
a wrong type or out-of-range value names the key and what was expected.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml


DEFAULT_MINUTES = 5.0  # budget used when no steps/kimg/epochs/minutes is given


from ganforge.errors import ConfigError  # noqa: E402,F401  (re-exported)


@dataclass
class DataConfig:
    dataset: str = "mnist-embedded"  # mnist-embedded | mnist | fashion-mnist | cifar10 | folder
    root: Optional[str] = None  # folder of files (mnist/fashion-mnist/cifar10 root, or image folder)
    split: str = "train"  # train | test (file datasets)
    download: bool = False  # download mnist/fashion-mnist/cifar10 with torchvision when missing
    size: Optional[List[int]] = None  # [H, W]; "32", "48x64" or [48, 64]; None keeps the native size
    channels: Optional[int] = None  # 1 or 3; None keeps the native channel count
    resize: str = "bilinear"  # nearest | bilinear | bicubic | lanczos | box
    crop: str = "center"  # center: keep aspect, cover then centre-crop | stretch: resize to exact size
    hflip: bool = False  # random horizontal flips of whole batches while training
    skip_bad: bool = False  # skip unreadable image files (and report how many) instead of failing
    limit: Optional[int] = None  # use only the first N images (after sorting)
    heldout: int = 0  # keep this many images (a seeded random choice) out of training ...
    part: str = "all"  # ... and use: all | train (without the held-out images) | heldout (only them)
    split_seed: int = 0  # seed of the held-out choice (0 matches the shipped MNIST classifier's split)


@dataclass
class ModelConfig:
    arch: str = "dcgan"  # registry name: dcgan | mlp | resnet
    z_dim: int = 100
    g_width: Optional[int] = None  # generator base width; None = family default (dcgan 64, resnet 64, mlp 256)
    d_width: Optional[int] = None  # discriminator base width; None = family default (dcgan 64, resnet 64, mlp 256)
    g_norm: str = "batch"  # batch | none
    d_norm: str = "batch"  # batch | none | spectral
    conditional: bool = False  # class-conditional G and D; labels come from the dataset
    num_classes: int = 0  # set from the dataset when conditional (0 = unconditional)
    g_cond: str = "cbn"  # how G sees the label: cbn (conditional BatchNorm) | embed (label embedding joined to z)
    d_cond: str = "projection"  # how D sees the label: projection (Miyato & Koyama 2018) | acgan (auxiliary classifier)
    mbstd: bool = False  # minibatch standard-deviation feature in D (Karras et al. 2018)


@dataclass
class LossConfig:
    name: str = "non-saturating"  # minimax | non-saturating | hinge | wgan-gp | lsgan
    gp_weight: Optional[float] = None  # gradient penalty weight; None -> 10 for wgan-gp, else 0
    r1_gamma: float = 0.0  # R1 penalty weight on real images (0 = off)
    r1_every: int = 1  # apply R1 every k discriminator steps (lazy regularisation)
    label_smoothing: float = 0.0  # one-sided: real targets 1 - s for the logistic D loss (Salimans et al. 2016)
    instance_noise: float = 0.0  # std of Gaussian noise added to D's inputs (real and fake)
    instance_noise_steps: int = 0  # anneal the noise linearly to 0 over this many steps (0 = constant)
    acgan_weight: float = 1.0  # weight of the auxiliary classification loss (d_cond=acgan)


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | rmsprop
    lr: float = 2e-4
    beta1: float = 0.5  # Adam only
    beta2: float = 0.999  # Adam only; RMSprop uses it as alpha
    weight_decay: float = 0.0


@dataclass
class TrainConfig:
    batch_size: int = 64
    steps: Optional[int] = None  # generator steps
    kimg: Optional[float] = None  # thousands of real images shown to D
    epochs: Optional[float] = None  # passes over the dataset
    minutes: Optional[float] = None  # wall-clock budget
    n_critic: int = 1  # discriminator steps per generator step
    seed: int = 0
    ema_decay: float = 0.999  # EMA of generator weights used for samples (0 = off)
    ema_warmup: bool = True  # warm-up: the decay at step t is min(ema_decay, (1+t)/(10+t)), so early samples are not stale
    log_every: int = 50  # steps between metric lines
    sample_every: int = 500  # steps between sample grids
    checkpoint_every: int = 1000  # steps between checkpoints
    keep_checkpoints: int = 3  # keep the newest K step checkpoints
    sample_count: int = 64  # images in each sample grid (fixed noise)
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    amp: bool = False  # bfloat16 autocast: CUDA, or a CPU with native bfloat16 (AVX512-BF16/AMX); else float32 with a message
    compile: bool = False  # torch.compile the networks (falls back with a warning)
    threads: Optional[int] = None  # torch.set_num_threads; None leaves torch's default
    tensorboard: bool = True
    progress: bool = True


@dataclass
class AugmentConfig:
    policy: str = ""  # DiffAugment (Zhao et al. 2020) applied to every D input: comma list of color,translation,cutout
    translation: float = 0.125  # max shift as a fraction of the image size
    cutout: float = 0.5  # cutout square side as a fraction of the image size


@dataclass
class InpaintConfig:
    arch: str = "gated"  # completion network: gated (gated convolutions, Yu et al. 2019) | partial (Liu et al. 2018)
    width: int = 32  # U-Net base channels
    d_width: int = 32  # PatchGAN discriminator base channels
    masks: str = "mixed"  # random training masks made on the fly: box | free (strokes) | mixed
    hole_min: float = 0.1  # smallest missing fraction of the image
    hole_max: float = 0.5  # largest missing fraction of the image
    l1_hole: float = 6.0  # L1 weight inside the hole (Liu et al. 2018)
    l1_valid: float = 1.0  # L1 weight on the known pixels
    adv_weight: float = 0.1  # adversarial (PatchGAN, hinge) weight


@dataclass
class EvalConfig:
    every_kimg: float = 50.0  # evaluate while training every N thousand real images (0 = off)
    features: str = "auto"  # auto (mnist for 1-channel data, else off) | mnist | inception | none
    samples: int = 2000  # generated images per in-training evaluation
    inception_weights: Optional[str] = None  # local Inception weights file (features=inception offline)


@dataclass
class WatchdogConfig:
    enabled: bool = True  # watch for collapse and divergence while training
    action: str = "rollback"  # warn | rollback (to the last good checkpoint, lower the learning rates) | stop
    patience: int = 200  # steps a symptom must persist before it counts
    d_fake_min: float = 0.02  # D(G(z)) below this (D dominates) ...
    d_real_min: float = 0.98  # ... while D(x) is above this
    g_grad_min: float = 1e-4  # generator gradient norm below this = vanishing
    fid_rise: float = 1.5  # in-training FID above this factor x the best so far
    coverage_drop: int = 2  # classes covered falling this many below the best so far
    lr_factor: float = 0.25  # learning rates are multiplied by this on each rollback (only D's when D dominates)
    max_rollbacks: int = 3  # then stop with a diagnosis
    switch_minimax: bool = True  # when D dominates a minimax run, a rollback also moves G to the non-saturating loss
    check_every: int = 10  # steps between checks of the cheap signals


@dataclass
class Config:
    name: Optional[str] = None  # run folder suffix; default "<dataset>-<arch>"
    task: str = "gan"  # gan (generate images) | inpaint (train a completion network)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    g_optim: OptimConfig = field(default_factory=OptimConfig)
    d_optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    inpaint: InpaintConfig = field(default_factory=InpaintConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Dict[str, Any] | None) -> "Config":
        cfg = _from_dict(cls, d or {}, prefix="")
        cfg.validate()
        return cfg

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def copy(self) -> "Config":
        return Config.from_dict(self.to_dict())

    def run_name(self) -> str:
        if self.name:
            return self.name
        ds = {"mnist-embedded": "mnist"}.get(self.data.dataset, self.data.dataset)
        if self.data.dataset == "folder" and self.data.root:
            ds = Path(self.data.root).name or "folder"
        return f"{ds}-{self.model.arch if self.task == 'gan' else 'inpaint-' + self.inpaint.arch}"

    # ---- checks ---------------------------------------------------------------------------
    def validate(self) -> None:
        from ganforge.data import DATASETS
        from ganforge.losses import LOSSES
        from ganforge.models import MODELS

        d, m, lo, t = self.data, self.model, self.loss, self.train
        _choice("data.dataset", d.dataset, DATASETS.names())
        _choice("data.split", d.split, ["train", "test"])
        _choice("data.resize", d.resize, ["nearest", "bilinear", "bicubic", "lanczos", "box"])
        _choice("data.crop", d.crop, ["center", "stretch"])
        if d.channels is not None:
            _choice("data.channels", d.channels, [1, 3])
        if d.size is not None:
            if len(d.size) != 2 or any(s < 4 or s > 4096 for s in d.size):
                raise ConfigError(f"data.size: expected height and width between 4 and 4096, got {d.size}")
        if d.dataset == "folder" and not d.root:
            raise ConfigError("data.root: the 'folder' dataset needs data.root=PATH (a folder of images)")
        _positive("data.limit", d.limit, allow_none=True)
        _nonneg("data.heldout", d.heldout)
        _choice("data.part", d.part, ["all", "train", "heldout"])
        if d.part != "all" and d.heldout == 0:
            raise ConfigError(f"data.part={d.part} needs data.heldout=N (how many images to hold out)")
        _nonneg("data.split_seed", d.split_seed)

        _choice("model.arch", m.arch, MODELS.names())
        _positive("model.z_dim", m.z_dim)
        _positive("model.g_width", m.g_width, allow_none=True)
        _positive("model.d_width", m.d_width, allow_none=True)
        _choice("model.g_norm", m.g_norm, ["batch", "none"])
        _choice("model.d_norm", m.d_norm, ["batch", "none", "spectral"])

        _choice("model.g_cond", m.g_cond, ["cbn", "embed"])
        _choice("model.d_cond", m.d_cond, ["projection", "acgan"])
        if m.num_classes < 0:
            raise ConfigError(f"model.num_classes: expected 0 or more, got {m.num_classes}")

        _choice("loss.name", lo.name, LOSSES.names())
        if lo.gp_weight is None:
            lo.gp_weight = 10.0 if lo.name == "wgan-gp" else 0.0
        _nonneg("loss.gp_weight", lo.gp_weight)
        _nonneg("loss.r1_gamma", lo.r1_gamma)
        _positive("loss.r1_every", lo.r1_every)
        if not 0.0 <= lo.label_smoothing < 0.5:
            raise ConfigError(f"loss.label_smoothing: expected a value in [0, 0.5), got {lo.label_smoothing}")
        if lo.label_smoothing > 0 and lo.name not in ("minimax", "non-saturating"):
            raise ConfigError(
                f"loss.label_smoothing: applies to the logistic losses (minimax, non-saturating), not {lo.name!r}"
            )
        _nonneg("loss.instance_noise", lo.instance_noise)
        _nonneg("loss.instance_noise_steps", lo.instance_noise_steps)
        _nonneg("loss.acgan_weight", lo.acgan_weight)
        if lo.name == "wgan-gp" and lo.gp_weight == 0:
            raise ConfigError("loss.gp_weight: wgan-gp needs a gradient penalty > 0 (10 is standard)")
        if lo.name == "wgan-gp" and m.d_norm == "batch":
            raise ConfigError(
                "model.d_norm: batch norm in the critic breaks the per-sample gradient penalty of wgan-gp; "
                "use model.d_norm=none or spectral"
            )

        for key in ("g_optim", "d_optim"):
            o: OptimConfig = getattr(self, key)
            _choice(f"{key}.name", o.name, ["adam", "rmsprop"])
            _positive(f"{key}.lr", o.lr)
            for b in ("beta1", "beta2"):
                v = getattr(o, b)
                if not 0.0 <= v < 1.0:
                    raise ConfigError(f"{key}.{b}: expected a value in [0, 1), got {v}")
            _nonneg(f"{key}.weight_decay", o.weight_decay)

        _positive("train.batch_size", t.batch_size)
        for k in ("steps", "kimg", "epochs", "minutes"):
            _positive(f"train.{k}", getattr(t, k), allow_none=True)
        _positive("train.n_critic", t.n_critic)
        if not 0.0 <= t.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay: expected a value in [0, 1), got {t.ema_decay}")
        for k in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints", "sample_count"):
            _positive(f"train.{k}", getattr(t, k))
        _positive("train.threads", t.threads, allow_none=True)
        if not (t.device in ("cpu", "cuda", "auto", "mps") or t.device.startswith("cuda:")):
            raise ConfigError(f"train.device: expected cpu, cuda, cuda:N, mps or auto, got {t.device!r}")
        if t.seed < 0:
            raise ConfigError(f"train.seed: expected a non-negative integer, got {t.seed}")
        a = self.augment
        ops = [p.strip() for p in a.policy.split(",") if p.strip()]
        for op in ops:
            _choice("augment.policy", op, ["color", "translation", "cutout"])
        a.policy = ",".join(ops)
        if not 0 < a.translation < 1 or not 0 < a.cutout < 1:
            raise ConfigError("augment.translation and augment.cutout: expected fractions in (0, 1)")

        _choice("task", self.task, ["gan", "inpaint"])
        ip = self.inpaint
        _choice("inpaint.arch", ip.arch, ["gated", "partial"])
        _choice("inpaint.masks", ip.masks, ["box", "free", "mixed"])
        _positive("inpaint.width", ip.width)
        _positive("inpaint.d_width", ip.d_width)
        if not 0 < ip.hole_min <= ip.hole_max < 1:
            raise ConfigError(f"inpaint.hole_min/hole_max: expected 0 < min <= max < 1, got {ip.hole_min}, {ip.hole_max}")
        for k in ("l1_hole", "l1_valid", "adv_weight"):
            _nonneg(f"inpaint.{k}", getattr(ip, k))

        e = self.eval
        _nonneg("eval.every_kimg", e.every_kimg)
        _choice("eval.features", e.features, ["auto", "mnist", "inception", "none"])
        if e.samples < 2:
            raise ConfigError(f"eval.samples: expected at least 2, got {e.samples}")

        w = self.watchdog
        _choice("watchdog.action", w.action, ["warn", "rollback", "stop"])
        for k in ("patience", "max_rollbacks", "check_every"):
            _positive(f"watchdog.{k}", getattr(w, k))
        if not 0 < w.lr_factor < 1:
            raise ConfigError(f"watchdog.lr_factor: expected a value in (0, 1), got {w.lr_factor}")
        if w.fid_rise <= 1:
            raise ConfigError(f"watchdog.fid_rise: expected a factor > 1, got {w.fid_rise}")

        if not self.has_budget():
            t.minutes = DEFAULT_MINUTES

    def has_budget(self) -> bool:
        t = self.train
        return any(v is not None for v in (t.steps, t.kimg, t.epochs, t.minutes))


# ------------------------------------------------------------------------------------------
# presets and overrides


def preset_names() -> List[str]:
    folder = resources.files("ganforge") / "assets" / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> Dict[str, Any]:
    """A shipped preset by name (``mnist``) or a YAML file by path."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"preset file {name_or_path!r} does not exist")
        text = path.read_text()
        where = str(path)
    else:
        res = resources.files("ganforge") / "assets" / "presets" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ConfigError(
                f"unknown preset {name_or_path!r}; shipped presets: {', '.join(preset_names())} "
                "(or give a path to a .yaml file)"
            )
        text = res.read_text()
        where = f"preset {name_or_path}"
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {e}") from None
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping of config sections at the top level")
    return d


def apply_overrides(d: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``a.b=value`` strings to a nested dict (values parsed as YAML scalars)."""
    d = _deepcopy(d)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.batch_size=128")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else None
        except yaml.YAMLError:
            value = raw
        _check_key(key)
        node = d
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return d


def resolve(preset: Optional[str] = None, overrides: Sequence[str] = (), base: Optional[Dict[str, Any]] = None) -> Config:
    """Defaults <- preset <- overrides, validated."""
    d = _deepcopy(base) if base else {}
    if preset:
        d = _merge(d, load_preset(preset))
    d = apply_overrides(d, overrides)
    return Config.from_dict(d)


def allowed_keys(cls=Config, prefix: str = "") -> List[str]:
    out = []
    for f in dataclasses.fields(cls):
        t = _hints(cls)[f.name]
        if dataclasses.is_dataclass(t):
            out += allowed_keys(t, prefix + f.name + ".")
        else:
            out.append(prefix + f.name)
    return out


def parse_size(value: Any) -> Optional[Tuple[int, int]]:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, str):
        s = value.lower().replace(" ", "")
        if "x" in s:
            h, w = s.split("x", 1)
            return (int(h), int(w))
        return (int(s), int(s))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return (int(value[0]), int(value[0]))
    raise ValueError


# ------------------------------------------------------------------------------------------
# internals

_HINTS: Dict[type, Dict[str, Any]] = {}


def _hints(cls) -> Dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _check_key(key: str) -> None:
    keys = allowed_keys()
    sections = {k.split(".")[0] for k in keys if "." in k}
    if key in keys:
        return
    head = key.split(".")[0]
    if head in sections and key.count(".") == 1:
        allowed = [k for k in keys if k.startswith(head + ".")]
        raise ConfigError(f"unknown config key {key!r}; allowed keys in {head!r}: {', '.join(allowed)}")
    raise ConfigError(f"unknown config key {key!r}; allowed keys: {', '.join(keys)}")


def _from_dict(cls, d: Dict[str, Any], prefix: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {type(d).__name__}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for k in d:
        if k not in names:
            raise ConfigError(
                f"unknown config key {prefix + str(k)!r}; allowed keys"
                f"{' in ' + repr(prefix.rstrip('.')) if prefix else ''}: {', '.join(prefix + n for n in names)}"
            )
    kwargs = {}
    for name in names:
        if name not in d:
            continue
        t = hints[name]
        if dataclasses.is_dataclass(t):
            kwargs[name] = _from_dict(t, d[name] if d[name] is not None else {}, prefix + name + ".")
        else:
            kwargs[name] = _coerce(prefix + name, d[name], t)
    return cls(**kwargs)


def _coerce(key: str, value: Any, t: Any) -> Any:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0])
    if key == "data.size":
        try:
            return list(parse_size(value))
        except (ValueError, TypeError):
            raise ConfigError(f"{key}: expected a size like 32, 48x64 or [48, 64], got {value!r}") from None
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if t is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if t is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(v):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return v
    if t is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(key, v, args[0]) for v in value]
    return value


def _choice(key: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def _positive(key: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{key}: expected a positive number, got {value!r}")


def _nonneg(key: str, value: Any) -> None:
    if value is None or value < 0:
        raise ConfigError(f"{key}: expected a number >= 0, got {value!r}")


def _merge(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    out = _deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = _deepcopy(v)
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d
