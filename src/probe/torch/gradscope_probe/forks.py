"""This process's id, kept without a system call.

The probe's hooks compare it with the probe's own on every call, since a hook also runs in a forked
child (a DataLoader worker), where it must do nothing; os.getpid() is a system call each time (1.2 us
on this project's CI machines, about five a training step). A child gets its own id here from
os.register_at_fork, which runs on every fork that goes on running Python: os.fork, multiprocessing's
fork start method, subprocess's preexec_fn.
"""
from __future__ import annotations

import os

pid = os.getpid()


def _in_child() -> None:
    global pid
    pid = os.getpid()


os.register_at_fork(after_in_child=_in_child)
