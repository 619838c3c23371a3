"""ganforge: generative adversarial networks on images.

The API is imported lazily so ``import ganforge`` stays cheap and has no side effects::

    import ganforge
    run = ganforge.train(preset="default", overrides=["train.minutes=1"])
    g = ganforge.load_generator(run)
    images = g.sample_uint8(16, seed=0)       # uint8 [16, C, H, W]
"""
__version__ = "0.1.0"

_API = {
    "train": "ganforge.api",
    "load_generator": "ganforge.api",
    "GeneratorHandle": "ganforge.api",
    "Config": "ganforge.config",
    "resolve": "ganforge.config",
    "load_dataset": "ganforge.data",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ganforge' has no attribute {name!r}")
