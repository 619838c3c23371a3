"""The ``video`` task: a video GAN of the MoCoGAN family (``ganforge train task=video``, preset ``moving-mnist``).

Config: ``video`` (:class:`~ganforge.tasks.video.config.VideoConfig`) plus the shared ``data``, ``train``,
``g_optim`` (the generator) and ``d_optim`` (both discriminators). A clip is one content code and per-frame
motion codes; an image discriminator judges single frames, a 3-D convolutional one whole clips (generator
loss ``video_loss + video.image_weight * image_loss``). Files: ``data.py`` Moving MNIST on the fly and
folders of clips, ``networks.py``, ``trainer.py``, ``handle.py`` (:class:`~ganforge.tasks.video.handle.ClipHandle`),
``app.py`` (GIF/MP4/npz/frames), ``web.py``. Runs also write ``samples/latest.gif``.

Networks in a checkpoint: ``generator``, ``generator_ema``, ``image_discriminator``, ``video_discriminator``.
Options and figures: ``docs/tasks/video.md``.
"""
