"""ganforge: generative adversarial networks on images."""
__version__ = "0.1.0"
