"""The template task (tasks/_template/) is a working task: registered, it trains, resumes and loads
through the same machinery as the built-in tasks, with no change outside its folder."""

import pytest
import torch

from ganforge.data import ImageData
from ganforge.tasks import TASKS


@pytest.fixture
def template_task():
    from ganforge.tasks._template import task  # registers "template" when first imported

    if "template" not in TASKS:  # imported by an earlier test, whose fixture unregistered it
        TASKS.register("template")(task.TemplateTask())
    yield TASKS.get("template")
    TASKS._items.pop("template", None)  # leave the registry as the other tests expect it


def test_template_task_trains_and_loads(template_task, tmp_path):
    import ganforge
    import ganforge.api

    g = torch.Generator().manual_seed(0)
    data = ImageData(torch.randint(0, 256, (64, 1, 8, 8), generator=g, dtype=torch.uint8), None, [], "noise", "test")
    cfg = ganforge.resolve(
        None,
        [
            "task=template",
            "train.steps=6",
            "train.batch_size=16",
            "train.minutes=null",
            "train.sample_every=3",
            "train.checkpoint_every=3",
            *template_task.tiny,
        ],
    )
    run = ganforge.api.trainer(cfg, runs_dir=tmp_path, data=data).run()
    assert (run / "samples" / "latest.png").is_file() and (run / "checkpoints" / "step-00000006").is_dir()
    h = ganforge.load(run)
    assert type(h).__name__ == "TemplateHandle" and h.step == 6
    x = h.sample_uint8(5, seed=1)
    assert x.shape == (5, 1, 8, 8) and x.dtype == torch.uint8
    assert torch.equal(x, h.sample_uint8(5, seed=1))


def test_template_config_errors_name_the_key(template_task):
    import ganforge
    from ganforge.errors import ConfigError

    with pytest.raises(ConfigError, match="template.width"):
        ganforge.resolve(None, ["task=template", "template.width=0"])
    with pytest.raises(ConfigError, match="template.bogus"):
        ganforge.resolve(None, ["task=template", "template.bogus=1"])
