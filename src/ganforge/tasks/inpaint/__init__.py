"""The ``inpaint`` task: a completion network that fills holes in one pass, trained against a PatchGAN.

``ganforge train task=inpaint``. Config: ``inpaint`` (:class:`~ganforge.tasks.inpaint.config.InpaintConfig`)
plus the shared ``data``, ``train``, ``g_optim`` (the completion network) and ``d_optim`` (the PatchGAN).
A step draws random masks, fills the holes and minimises ``l1_hole * L1(hole) + l1_valid * L1(known) +
adv_weight * hinge_G`` (SN-PatchGAN, Yu et al. 2019; the split of Liu et al. 2018). Files: ``masks.py``,
``networks.py`` (gated / partial-convolution U-Nets, PatchGAN), ``trainer.py``, ``handle.py``
(:class:`~ganforge.tasks.inpaint.handle.InpainterHandle`), ``latent.py`` (completion with a GAN run),
``blend.py``, ``options.py``, ``app.py``, ``cli.py`` (``ganforge inpaint``), ``web.py``.
Networks in a checkpoint: ``generator``, ``generator_ema`` and ``discriminator``. Options and figures:
``docs/tasks/inpaint.md``.
"""
