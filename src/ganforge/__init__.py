"""ganforge: generative adversarial networks on images.

The API is imported lazily so ``import ganforge`` stays cheap and has no side effects::

    import ganforge
    run = ganforge.train(preset="default", overrides=["train.minutes=1"])
    g = ganforge.load(run)                     # the run's task handle; for a GAN a GeneratorHandle
    images = g.sample_uint8(16, seed=0)       # uint8 [16, C, H, W]
"""

__version__ = "0.1.0"

_API = {
    "train": "ganforge.api",
    "load": "ganforge.api",
    "load_generator": "ganforge.api",
    "evaluate": "ganforge.api",
    "GeneratorHandle": "ganforge.api",
    "Config": "ganforge.config",
    "resolve": "ganforge.tasks",
    "TASKS": "ganforge.tasks",
    "load_dataset": "ganforge.data",
    "GanforgeError": "ganforge.errors",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ganforge' has no attribute {name!r}")
