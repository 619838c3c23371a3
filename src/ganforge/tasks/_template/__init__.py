"""A minimal task to copy: an unconditional MLP GAN in six short files.

To add a task ``mytask``: copy this folder to ``tasks/mytask/``, rename the classes, set ``name`` in
``task.py`` and add ``"mytask"`` to :data:`ganforge.tasks.NAMES` (the one line outside the folder).
Add ``app.py`` (user-facing functions), ``cli.py`` (a verb: ``VERB``, ``HELP``, ``add_arguments``,
``run``) and ``web.py`` (a page) when the task has them; the CLI and the web app find them by name.
This folder is not in ``NAMES``: it is not registered unless imported (``tests/test_template.py``).
"""
