"""GradScope's PyTorch probe: run a training script unchanged and stream its gradient statistics.

    python -m gradscope_probe script.py [args...]

runs ``script.py`` as ``python script.py args...`` would. With ``GRADSCOPE_CHANNEL_FD`` set (the
host opens fd 3), it hooks every optimizer step and writes protocol-v1 frames (docs/protocol.md)
to that fd. Needs only the standard library and torch (>= 1.13).

In a Jupyter kernel: ``%load_ext gradscope_probe`` then ``%gradscope on`` (notebook.py).
"""
from .wire import decode_all, encode  # noqa: F401

__all__ = ["decode_all", "encode", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(shell):
    """``%load_ext gradscope_probe``: registers the ``%gradscope`` magic (torch is imported at ``on``)."""
    from .notebook import load_ipython_extension as load

    load(shell)


def unload_ipython_extension(shell):
    from .notebook import unload_ipython_extension as unload

    unload(shell)
