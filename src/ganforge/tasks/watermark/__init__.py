"""The ``watermark`` task: an invisible watermark that survives common edits (HiDDeN, RivaGAN, TrustMark).

``ganforge train task=watermark`` (preset ``watermark``). Config: ``watermark``
(:class:`~ganforge.tasks.watermark.config.WatermarkConfig`) plus the shared ``data``, ``train``, ``g_optim``
(encoder and decoder) and ``d_optim`` (discriminator). A step marks a batch with random bits, attacks it,
rounds it to 8 bits and minimises ``BCE(bits) + clean_weight * BCE(decoder(clean), 1/2) + adv_weight * adv``
(the middle term keeps detection's false positives at the binomial test's rate). Files: ``networks.py``
(encoder and decoder on luminance), ``attacks.py``, ``trainer.py``, ``handle.py``
(:class:`~ganforge.tasks.watermark.handle.WatermarkHandle`), ``app.py`` (embed, extract, detect), ``cli.py``,
``web.py``. Networks in a checkpoint: ``generator`` (keys ``encoder.*`` and ``decoder.*``) and
``discriminator``. Options and figures: ``docs/tasks/watermark.md``.
"""
