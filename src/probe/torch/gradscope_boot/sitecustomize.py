"""GradScope's start-up hook for the processes of a distributed run (gradscope_probe/ranks.py).

The host puts this folder on PYTHONPATH for a PyTorch run, so every Python process the run starts
imports it at start-up. It instruments the process when it is one of the run's ranks, then imports
the sitecustomize that this one hides (the interpreter's own, a virtual environment's, the user's),
so that one still runs. It never raises.
"""


def _gradscope_boot():
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    env = os.environ
    try:
        # The cheap test first (gradscope_probe.ranks.is_rank_process says the same): any other Python
        # process of the run (the launcher, a helper the script runs) is left exactly as it was.
        if (env.get("GS_PROBE_SOCKET") and not env.get("GRADSCOPE_CHANNEL_FD")
                and ("RANK" in env or "LOCAL_RANK" in env or "--multiprocessing-fork" in sys.argv)):
            probe_dir = os.path.dirname(here)
            sys.path.append(probe_dir)
            try:
                from gradscope_probe import ranks

                ranks.boot()
            finally:
                # The package is imported (its modules import each other relatively): the script's
                # path stays its own.
                if probe_dir in sys.path:
                    sys.path.remove(probe_dir)
    except Exception as e:  # noqa: BLE001
        try:
            sys.stderr.write("[gradscope] warning: the start-up hook failed (%s)\n" % (e,))
        except Exception:  # noqa: BLE001
            pass
    # Chain to the next sitecustomize on the path (the one this file hides).
    me = sys.modules.pop("sitecustomize", None)
    saved = sys.path[:]
    try:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
        import importlib

        importlib.import_module("sitecustomize")
    except ImportError:
        if me is not None:
            sys.modules["sitecustomize"] = me
    except Exception as e:  # noqa: BLE001 - the other sitecustomize's error, as Python would show it
        try:
            sys.stderr.write("Error in sitecustomize; set PYTHONVERBOSE for traceback:\n%s: %s\n" % (type(e).__name__, e))
        except Exception:  # noqa: BLE001
            pass
    finally:
        sys.path[:] = saved


_gradscope_boot()
