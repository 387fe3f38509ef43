"""Import-only stand-in for safetensors (not packaged in Debian 12).

The corpus builds models from configs with random weights and never reads or
writes .safetensors files, so any use refuses loudly.
"""
__version__ = "0.0.0+corpus-stub"


class SafetensorError(Exception):
    pass


def safe_open(*args, **kwargs):
    raise RuntimeError("safetensors.safe_open: not available (corpus export stub)")
