"""The ``gan`` task: generate images with an unconditional or class-conditional GAN.

``ganforge train`` (the default task). Config: ``model`` (:class:`~ganforge.tasks.gan.config.ModelConfig`),
``loss`` (:class:`~ganforge.tasks.gan.config.LossConfig`), ``augment`` (DiffAugment), ``eval`` (in-training
FID) and ``watchdog`` (collapse detection), plus the shared ones; a step is ``train.n_critic`` discriminator
updates, then one generator update. Files: ``dcgan.py``, ``resnet.py``, ``mlp.py`` (network families),
``registry.py`` and ``networks.py`` (building them), ``augment.py``, ``trainer.py``, ``handle.py``
(:class:`~ganforge.tasks.gan.handle.GeneratorHandle`), ``app.py``, ``cli.py`` (``ganforge interpolate``),
``web.py``. Networks in a checkpoint: ``generator``, ``generator_ema`` (used for samples) and
``discriminator``. Options and figures: ``docs/tasks/gan.md``.
"""
