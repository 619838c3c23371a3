"""Configuration machinery: typed sections, YAML presets, ``key=value`` overrides, loud errors.

A run is one :class:`Config`: its ``task``, an optional ``name`` and one typed section (a dataclass) per
group of keys: the shared ones defined here (``data``, ``train``, ``g_optim``, ``d_optim``) and the task's own.
:func:`build` applies defaults, then a preset, then dotted overrides (``train.batch_size=128``), checking each
step: an unknown key, a wrong type or value, or a section the task does not use is an error that names it.
This module knows no task (it imports nothing of ganforge but the errors); :func:`ganforge.tasks.resolve`
puts a task's sections together.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from ganforge.errors import ConfigError

DEFAULT_MINUTES = 5.0  # budget used when no steps/kimg/epochs/minutes is given
TOP_LEVEL = ("name", "task")  # the keys that are not in a section


class Section:
    """Base of the config sections. A section is a dataclass whose fields are its keys;
    :meth:`check` validates (and may normalise) its own values, ``key`` being the section's
    name in the config (``g_optim`` and ``d_optim`` share one class)."""

    def check(self, key: str) -> None:  # pragma: no cover - every section overrides it
        pass


# ------------------------------------------------------------------------------------------
# the shared sections


@dataclass
class DataConfig(Section):
    dataset: str = (
        "mnist-embedded"  # mnist-embedded | emoji (built-in colour) | mnist | fashion-mnist | cifar10 | folder
    )
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
    classes: Optional[List[str]] = (
        None  # keep only these classes (indices or names, e.g. [5, 6, 7, 8, 9]); labels renumbered
    )
    labels: bool = True  # use the data's class labels (false: train as on unlabelled images, e.g. to compare)
    heldout: int = 0  # keep this many images (a seeded random choice) out of training ...
    part: str = "all"  # ... and use: all | train (without the held-out images) | heldout (only them)
    split_seed: int = 0  # seed of the held-out choice (0 matches the shipped MNIST classifier's split)

    def check(self, key: str = "data") -> None:
        # the dataset name is checked against ganforge.data.DATASETS by the task (tasks.base.Task.validate)
        choice(f"{key}.split", self.split, ["train", "test"])
        choice(f"{key}.resize", self.resize, ["nearest", "bilinear", "bicubic", "lanczos", "box"])
        choice(f"{key}.crop", self.crop, ["center", "stretch"])
        if self.channels is not None:
            choice(f"{key}.channels", self.channels, [1, 3])
        if self.size is not None:
            if len(self.size) != 2 or any(s < 4 or s > 4096 for s in self.size):
                raise ConfigError(f"{key}.size: expected height and width between 4 and 4096, got {self.size}")
        if self.dataset == "folder" and not self.root:
            raise ConfigError(f"{key}.root: the 'folder' dataset needs {key}.root=PATH (a folder of images)")
        positive(f"{key}.limit", self.limit, allow_none=True)
        if self.classes is not None and (not self.classes or len(set(self.classes)) != len(self.classes)):
            raise ConfigError(
                f"{key}.classes: expected a list of different classes (indices or names), got {self.classes}"
            )
        nonneg(f"{key}.heldout", self.heldout)
        choice(f"{key}.part", self.part, ["all", "train", "heldout"])
        if self.part != "all" and self.heldout == 0:
            raise ConfigError(f"{key}.part={self.part} needs {key}.heldout=N (how many images to hold out)")
        nonneg(f"{key}.split_seed", self.split_seed)


@dataclass
class OptimConfig(Section):
    name: str = "adam"  # adam | rmsprop
    lr: float = 2e-4  # learning rate
    beta1: float = 0.5  # Adam only
    beta2: float = 0.999  # Adam only; RMSprop uses it as alpha
    weight_decay: float = 0.0  # L2 weight decay passed to the optimiser (0 = none)

    def check(self, key: str) -> None:
        choice(f"{key}.name", self.name, ["adam", "rmsprop"])
        positive(f"{key}.lr", self.lr)
        for b in ("beta1", "beta2"):
            v = getattr(self, b)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"{key}.{b}: expected a value in [0, 1), got {v}")
        nonneg(f"{key}.weight_decay", self.weight_decay)


@dataclass
class TrainConfig(Section):
    batch_size: int = 64  # images per batch (per process under torchrun)
    steps: Optional[int] = None  # generator steps
    kimg: Optional[float] = None  # thousands of real images shown to D
    epochs: Optional[float] = None  # passes over the dataset
    minutes: Optional[float] = None  # wall-clock budget
    n_critic: int = 1  # discriminator steps per generator step
    seed: int = 0  # seed of every random stream of the run (init, batches, noise, ...)
    ema_decay: float = 0.999  # EMA of generator weights used for samples (0 = off)
    ema_warmup: bool = (
        True  # warm-up: the decay at step t is min(ema_decay, (1+t)/(10+t)), so early samples are not stale
    )
    log_every: int = 50  # steps between metric lines
    sample_every: int = 500  # steps between sample grids
    checkpoint_every: int = 1000  # steps between checkpoints
    checkpoint_minutes: float = 5.0  # ... and at least this often in wall-clock minutes
    keep_checkpoints: int = 3  # keep the newest K step checkpoints
    sample_count: int = 64  # images in each sample grid (fixed noise)
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    amp: bool = (
        False  # bfloat16 autocast: CUDA, or a CPU with native bfloat16 (AVX512-BF16/AMX); else float32 with a message
    )
    compile: bool = False  # torch.compile the networks (falls back with a warning)
    sync_bn: bool = (
        False  # several CUDA processes (torchrun): SyncBatchNorm; on the CPU running stats are averaged instead
    )
    threads: Optional[int] = None  # torch.set_num_threads; None leaves torch's default
    tensorboard: bool = True  # write TensorBoard events to the run's tb/ folder
    progress: bool = True  # show a progress bar on a terminal

    BUDGET_KEYS = ("steps", "kimg", "epochs", "minutes")

    def check(self, key: str = "train") -> None:
        positive(f"{key}.batch_size", self.batch_size)
        for k in self.BUDGET_KEYS:
            positive(f"{key}.{k}", getattr(self, k), allow_none=True)
        positive(f"{key}.n_critic", self.n_critic)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"{key}.ema_decay: expected a value in [0, 1), got {self.ema_decay}")
        for k in (
            "log_every",
            "sample_every",
            "checkpoint_every",
            "checkpoint_minutes",
            "keep_checkpoints",
            "sample_count",
        ):
            positive(f"{key}.{k}", getattr(self, k))
        positive(f"{key}.threads", self.threads, allow_none=True)
        if not (self.device in ("cpu", "cuda", "auto", "mps") or self.device.startswith("cuda:")):
            raise ConfigError(f"{key}.device: expected cpu, cuda, cuda:N, mps or auto, got {self.device!r}")
        if self.seed < 0:
            raise ConfigError(f"{key}.seed: expected a non-negative integer, got {self.seed}")
        if not self.has_budget():
            self.minutes = DEFAULT_MINUTES

    def has_budget(self) -> bool:
        return any(getattr(self, k) is not None for k in self.BUDGET_KEYS)


@dataclass
class EvalConfig(Section):
    every_kimg: Optional[float] = (
        None  # evaluate while training every N thousand real images (0 = off; null: 50 mnist, 200 effnet/inception)
    )
    features: str = (
        "auto"  # auto (grey mnist; colour: local inception weights, else effnet) | mnist | effnet | inception | none
    )
    samples: Optional[int] = (
        None  # generated images per in-training evaluation (null: 2000 mnist, 500 effnet/inception)
    )
    inception_weights: Optional[str] = None  # local Inception weights file (features=inception offline)

    def check(self, key: str = "eval") -> None:
        if self.every_kimg is not None:
            nonneg(f"{key}.every_kimg", self.every_kimg)
        choice(f"{key}.features", self.features, ["auto", "mnist", "effnet", "inception", "none"])
        if self.samples is not None and self.samples < 2:
            raise ConfigError(f"{key}.samples: expected at least 2, got {self.samples}")


# the sections every task has, in the order a config file lists them
SHARED_SECTIONS: Dict[str, type] = {
    "data": DataConfig,
    "g_optim": OptimConfig,
    "d_optim": OptimConfig,
    "train": TrainConfig,
}


# ------------------------------------------------------------------------------------------
# the config object


class Config:
    """A run's resolved configuration: ``task``, ``name`` and one section per key group.

    Sections are attributes (``cfg.train.batch_size``); which ones exist depends on the task
    (``cfg.sections()``). Build one with :func:`ganforge.resolve` (defaults <- preset <- overrides)
    or :func:`ganforge.tasks.config_from_dict`; it is plain data that round-trips through
    :meth:`to_dict`.
    """

    def __init__(self, task: str, sections: Mapping[str, Section], name: Optional[str] = None):
        self.__dict__["_sections"] = dict(sections)
        self.task = task
        self.name = name

    def __getattr__(self, key: str) -> Section:
        sections = self.__dict__.get("_sections", {})
        if key in sections:
            return sections[key]
        if key.startswith("__"):
            raise AttributeError(key)
        raise AttributeError(
            f"the {self.__dict__.get('task')!r} task's config has no section {key!r} "
            f"(its sections: {', '.join(sections)})"
        )

    def sections(self) -> List[str]:
        return list(self._sections)

    def __contains__(self, section: str) -> bool:
        return section in self._sections

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Config(task={self.task!r}, sections={self.sections()})"

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"name": self.name, "task": self.task}
        out.update({k: dataclasses.asdict(v) for k, v in self._sections.items()})
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def copy(self) -> "Config":
        return copy.deepcopy(self)

    def has_budget(self) -> bool:
        return self.train.has_budget()

    def keys(self) -> List[str]:
        """Every dotted key of this config (``train.batch_size``, ...), with ``name`` and ``task``."""
        return list(TOP_LEVEL) + section_keys({k: type(v) for k, v in self._sections.items()})


def build(
    d: Mapping[str, Any],
    schema: Mapping[str, type],
    task: str,
    drop: Iterable[str] = (),
    known_elsewhere: Iterable[str] = (),
) -> Config:
    """A :class:`Config` of ``task`` from a nested dict, with the sections of ``schema``.

    Top-level keys named in ``drop`` that are not in the schema (sections a preset or an older
    run folder carries for other tasks) are left out; any other key outside the schema is an
    error, worded for a section that belongs to another task when it is in ``known_elsewhere``.
    Each section's fields are type-checked and then its :meth:`Section.check` runs.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"config: expected a mapping of sections, got {type(d).__name__}")
    drop, elsewhere = set(drop), set(known_elsewhere)
    for k in d:
        if k in TOP_LEVEL or k in schema or k in drop:
            continue
        if k in elsewhere:
            raise ConfigError(
                f"config section {k!r} does not apply to task {task!r}; its sections: {', '.join(schema)}"
            )
        raise ConfigError(
            f"unknown config key {k!r}; allowed keys: {', '.join(list(TOP_LEVEL) + section_keys(schema))}"
        )
    sections = {}
    for key, cls in schema.items():
        raw = d.get(key)
        sections[key] = _from_dict(cls, raw if raw is not None else {}, prefix=key + ".")
        sections[key].check(key)
    name = d.get("name")
    if name is not None and not isinstance(name, str):
        name = _coerce("name", name, str)
    return Config(task, sections, name)


def section_keys(schema: Mapping[str, type]) -> List[str]:
    """``section.field`` for every field of every section in ``schema``."""
    return [f"{k}.{f.name}" for k, cls in schema.items() for f in dataclasses.fields(cls)]


# ------------------------------------------------------------------------------------------
# presets and overrides


def preset_names() -> List[str]:
    folder = resources.files("ganforge") / "assets" / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_summary(name: str) -> str:
    """The first comment line of a shipped preset (what ``ganforge presets`` prints)."""
    text = (resources.files("ganforge") / "assets" / "presets" / f"{name}.yaml").read_text()
    return next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), "")


def yaml_problem(e: Exception) -> str:
    """A YAML parse error in one line: ``line 3, column 4: expected ',' or ']', but got ':' (while parsing a
    flow sequence that starts at line 2)``; PyYAML's own message spans several lines with the text quoted."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or str(e).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
    extra = ""
    if context and context != problem:
        extra = f" ({context}{f' that starts at line {cmark.line + 1}' if cmark is not None else ''})"
    return f"{where}{problem}{extra}"


def load_preset(name_or_path: str, _chain: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """A shipped preset by name (``default``) or a YAML file by path, as a nested dict.

    A preset starts from the defaults of the config's dataclasses, or from another preset that it
    names with a top-level ``base:`` key (a shipped name, or a YAML path relative to the file), on
    top of which its own keys apply (a budget of its own replaces the base's budget).
    """
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"preset file {name_or_path!r} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read preset file '{path}': {getattr(e, 'strerror', None) or e}") from None
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
        raise ConfigError(f"{where}: not valid YAML at {yaml_problem(e)}") from None
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping of config sections at the top level")
    base = d.pop("base", None)
    if base is None:
        return d
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{where}: base: expected the name of a preset or the path of a YAML file, got {base!r}")
    if base.endswith((".yaml", ".yml")) and not Path(base).is_absolute() and where == str(path):
        base = str(path.parent / base)
    if where in _chain or base in _chain:
        raise ConfigError(f"{where}: base: presets name each other in a loop ({' -> '.join(_chain + (where, base))})")
    inherited = load_preset(base, _chain + (where,))
    own_budget = set(TrainConfig.BUDGET_KEYS) & set(d.get("train") or {})
    if own_budget and isinstance(inherited.get("train"), dict):  # a budget of its own replaces the base's
        for k in TrainConfig.BUDGET_KEYS:
            inherited["train"].pop(k, None)
    return merge(inherited, d)


def parse_override(item: str) -> Tuple[str, Any]:
    """``a.b=value`` -> (``a.b``, value parsed as a YAML scalar)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. train.batch_size=128")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else None
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(d: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``a.b=value`` strings to a nested dict (values parsed as YAML scalars). Keys are
    checked when the config is built, against the sections of its task."""
    d = deepcopy(d)
    for item in overrides:
        key, value = parse_override(item)
        node = d
        parts = key.split(".")
        if len(parts) > 2:
            raise ConfigError(f"unknown config key {key!r}: keys are 'section.key' (e.g. train.steps) or 'name'/'task'")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return d


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
# checks the sections share


def choice(key: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def positive(key: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{key}: expected a positive number, got {value!r}")


def nonneg(key: str, value: Any) -> None:
    if value is None or value < 0:
        raise ConfigError(f"{key}: expected a number >= 0, got {value!r}")


# ------------------------------------------------------------------------------------------
# internals

_HINTS: Dict[type, Dict[str, Any]] = {}


def _hints(cls) -> Dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _from_dict(cls, d: Any, prefix: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.')}: expected a mapping, got {type(d).__name__}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for k in d:
        if k not in names:
            raise ConfigError(
                f"unknown config key {prefix + str(k)!r}; allowed keys in {prefix.rstrip('.')!r}: "
                f"{', '.join(prefix + n for n in names)}"
            )
    kwargs = {name: _coerce(prefix + name, d[name], hints[name]) for name in names if name in d}
    return cls(**kwargs)


def _coerce(key: str, value: Any, t: Any) -> Any:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for a in inner[:-1]:  # e.g. Union[bool, str]: true/false as a bool, anything else as a string
            try:
                return _coerce(key, value, a)
            except ConfigError:
                pass
        return _coerce(key, value, inner[-1])
    if key.endswith(".size") and origin in (list, List):
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


def merge(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    """``b`` on top of ``a``, recursively (a new dict)."""
    out = deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = deepcopy(v)
    return out


def deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [deepcopy(v) for v in d]
    return d
