"""The ``translate`` task: image-to-image translation, paired (pix2pix) or unpaired (CycleGAN).

``ganforge train task=translate``. Config: ``translate`` (:class:`~ganforge.tasks.translate.config.TranslateConfig`)
plus the shared ``data``, ``train``, ``g_optim`` (the generators) and ``d_optim`` (the discriminators).
Files: ``data.py`` the two domains A and B, ``networks.py`` U-Net / ResNet generators and PatchGAN,
``losses.py``, ``trainer.py``, ``handle.py`` (:class:`~ganforge.tasks.translate.handle.TranslatorHandle`),
``app.py`` (image files and folders), ``cli.py`` (``ganforge translate``), ``web.py``, ``task.py``.

Networks in a checkpoint: ``generator`` (A -> B), ``generator_ema``, ``discriminator`` (judges B);
CycleGAN adds ``generator_b2a``, ``generator_b2a_ema`` and ``discriminator_a``. config.json records
``shape_b`` and the directions trained. Losses, options and figures: ``docs/tasks/translate.md``.
"""
