"""The errors a user can fix. Every one of them is a :class:`GanforgeError`, so the command line
catches that one type and prints its one-line message (``error: ...``, exit status 2).

Each also derives from the built-in type that fits (``ValueError`` for bad input, ``RuntimeError``
for a run that cannot go on), so ``except ValueError`` in user code keeps working. The modules
where each error belongs re-export it (``ganforge.config.ConfigError``, ``ganforge.data.DataError``,
...), so either import works.
"""

from __future__ import annotations


class GanforgeError(Exception):
    """Base of every user-facing ganforge error: the message is one line that says what to change."""


class ConfigError(GanforgeError, ValueError):
    """A configuration problem the user can fix; the message names the key."""


class DataError(GanforgeError, ValueError):
    """A data problem the user can fix; the message names the file, folder or key."""


class RunError(GanforgeError, ValueError):
    """A folder that is not a ganforge run, or a checkpoint that cannot be used."""


class WriteError(RunError):
    """A file of a run could not be written (a full disk, a missing permission); what was there before is intact."""


class TrainingError(GanforgeError, RuntimeError):
    """Training cannot go on (e.g. the losses became NaN); the message says why and what to try."""


class ModelBuildError(GanforgeError, ValueError):
    """The requested combination of model options cannot be built; the message says what to change."""


class LabelError(GanforgeError, ValueError):
    """Class labels that do not fit the generator (unknown class, labels for an unconditional model)."""


class EvalError(GanforgeError, ValueError):
    """An evaluation problem the user can fix; the message is one line and says what to do."""


class ImageError(GanforgeError, ValueError):
    """An image, mask or box that cannot be read, written or used; the message names it."""


class InpaintError(GanforgeError, ValueError):
    """A problem with the inputs of an image completion that the user can fix (one line)."""


class UpscaleError(GanforgeError, ValueError):
    """An input of an upscaling that the user can fix (an image, a tile size, a model of another task)."""


class TranslateError(GanforgeError, ValueError):
    """A translation input the user can fix: a direction the model was not trained for, a wrong channel
    count, an unreadable image (one line)."""


class UsageError(GanforgeError, ValueError):
    """A bad command-line argument found after parsing."""


class WatermarkError(GanforgeError, ValueError):
    """A watermarking input the user can fix: a message longer than the capacity, a run of another task,
    an image too small to read, an unreadable file, a malformed key (one line)."""
