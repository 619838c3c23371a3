import pytest

from ganforge.config import ConfigError, apply_overrides, preset_names
from ganforge.tasks import allowed_keys, config_from_dict, resolve


def test_defaults_validate_and_get_a_budget():
    cfg = resolve()
    assert cfg.model.arch == "dcgan"
    assert cfg.train.minutes == 5.0  # no budget given -> the default 5 minutes


def test_overrides_are_typed():
    cfg = resolve(None, ["train.batch_size=128", "data.size=48x64", "train.amp=true", "g_optim.lr=1e-4"])
    assert cfg.train.batch_size == 128 and cfg.data.size == [48, 64]
    assert cfg.train.amp is True and cfg.g_optim.lr == pytest.approx(1e-4)
    assert resolve(None, ["data.size=32"]).data.size == [32, 32]


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.batchsize'.*train\.batch_size"):
        resolve(None, ["train.batchsize=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'trian\.steps'.*allowed keys: .*train\.steps"):
        resolve(None, ["trian.steps=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.depth'"):
        config_from_dict({"model": {"depth": 3}})


def test_wrong_type_and_range():
    with pytest.raises(ConfigError, match=r"train\.batch_size: expected an integer, got 'lots'"):
        resolve(None, ["train.batch_size=lots"])
    with pytest.raises(ConfigError, match=r"train\.batch_size: expected a positive number, got 0"):
        resolve(None, ["train.batch_size=0"])
    with pytest.raises(ConfigError, match=r"loss\.name: 'wgan-xx' is not allowed; choose one of: .*hinge"):
        resolve(None, ["loss.name=wgan-xx"])
    with pytest.raises(ConfigError, match=r"train\.ema_decay: expected a value in \[0, 1\)"):
        resolve(None, ["train.ema_decay=1.5"])
    with pytest.raises(ConfigError, match=r"data\.size: expected a size like 32, 48x64"):
        resolve(None, ["data.size=big"])
    with pytest.raises(ConfigError, match=r"expected key=value"):
        apply_overrides({}, ["train.steps"])


def test_impossible_combinations():
    with pytest.raises(ConfigError, match=r"batch norm in the critic"):
        resolve(None, ["loss.name=wgan-gp"])
    assert resolve(None, ["loss.name=wgan-gp", "model.d_norm=none"]).loss.gp_weight == 10.0
    with pytest.raises(ConfigError, match=r"data\.root"):
        resolve(None, ["data.dataset=folder"])


def test_presets_all_load():
    names = preset_names()
    assert "default" in names
    for name in names:
        try:
            resolve(name)
        except ConfigError as e:  # a preset for the user's own folder of images (photo-sr) needs its path
            assert "data.root" in str(e), (name, e)
            resolve(name, ["data.root=photos"])
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'; shipped presets: .*default"):
        resolve("nope")


def test_yaml_file_preset(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("train:\n  steps: 7\nmodel:\n  arch: mlp\n")
    cfg = resolve(str(p), ["train.steps=9"])
    assert cfg.train.steps == 9 and cfg.model.arch == "mlp" and cfg.train.minutes is None
    p.write_text("train: [1, 2]\n")
    with pytest.raises(ConfigError, match="train: expected a mapping"):
        resolve(str(p))


def test_round_trip_through_dict():
    cfg = resolve(None, ["data.size=48x64", "train.steps=3"])
    assert config_from_dict(cfg.to_dict()) == cfg
    assert "train.batch_size" in allowed_keys()


def test_every_config_key_has_help():
    """Every key of every task has a meaning in `ganforge config` (the comment on the field's lines), also
    where the formatter wraps a long field onto several lines."""
    from ganforge.cli.config import config_keys
    from ganforge.tasks import TASKS

    missing = [k["key"] for name in TASKS.names() for k in config_keys(TASKS.get(name)) if not k["comment"]]
    assert missing == []


def test_a_registry_loads_its_entries_on_first_look_up_and_reports_a_failed_load_again():
    from ganforge.registry import Registry

    calls = []

    def loader():
        calls.append(1)
        if len(calls) == 1:
            raise ImportError("a task module is broken")
        reg.register("x")(1)

    reg = Registry("thing", loader=loader)
    assert calls == []  # nothing is imported before a look-up
    with pytest.raises(ImportError, match="broken"):
        reg.names()
    assert reg.names() == ["x"] and reg.get("x") == 1 and len(calls) == 2
