"""The ``superres`` task: a super-resolution generator trained in SRGAN/ESRGAN's two stages.

``ganforge train task=superres``. Config: ``superres`` (:class:`~ganforge.tasks.superres.config.SuperResConfig`)
plus the shared ``data``, ``train``, ``g_optim`` (generator) and ``d_optim`` (discriminator). The first
``superres.pixel_steps`` steps train on L1 alone (checkpoint ``pixel``), then L1 + feature loss +
adversarial loss fine-tune from there (``superres.adv_weight=0``: the first stage only). Files: ``data.py``
(degradations), ``networks.py`` (SRResNet/RRDB, U-Net discriminator), ``losses.py`` (feature losses),
``trainer.py``, ``handle.py`` (:class:`~ganforge.tasks.superres.handle.UpscalerHandle`), ``app.py``,
``cli.py`` (``ganforge upscale``), ``web.py``. Networks in a checkpoint: ``generator``, ``generator_ema``
and (with an adversarial stage) ``discriminator``. Options and figures: ``docs/tasks/superres.md``.
"""
