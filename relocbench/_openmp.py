"""The OpenMP wait policy relocbench chooses for PyTorch's CPU thread pool.

PyTorch's CPU kernels run on an OpenMP pool (GNU libgomp in the PyPI wheels). By default
its threads spin-wait at every barrier before they sleep (libgomp: about 300,000 spins,
``OMP_WAIT_POLICY=ACTIVE``: for minutes). On a CPU that other processes share, a spinning
thread holds a core while the thread it waits for is descheduled, and every small parallel
op of a training step pays for it (measured on 2026-12-07: see ``benchmarks/bench_busy.py``
and the README). ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep at once.

libgomp reads its environment once, when the library is loaded (``initialize_env``, a
constructor in libgomp's ``env.c``), that is during ``import torch``: the variable must be
in the environment before torch is imported, which is why ``import relocbench`` (and so the
``relocbench`` command, ``python -m relocbench`` and every ``torchrun -m relocbench`` rank)
sets it first. Processes started later (torchrun ranks, ``spawn`` workers, the local
executor's subprocesses) inherit the environment, so they start with the same policy.

A user's own choice wins: nothing is set when ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``
(libgomp) or ``KMP_BLOCKTIME`` (Intel OpenMP) is already in the environment, and nothing
when torch is already imported (too late to matter; the environment is left as it was).
The thread count is left to torch and ``--threads``, except that ``run-baseline`` on a CPU
gives a baseline the count it declares (``Baseline.cpu_threads``) when the policy is passive
and the user chose none: a model made of many small ops (cgbm) gains nothing from a second
passive thread, which every parallel op must wake (measured on 2026-12-07: README).
"""
from __future__ import annotations

import os
import sys
from typing import MutableMapping, Optional

__all__ = ["USER_SETTINGS", "choose_wait_policy"]

#: Variables by which a user chooses how OpenMP threads wait: any of them present -> leave all alone.
USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def choose_wait_policy(environ: Optional[MutableMapping[str, str]] = None, modules=None) -> Optional[str]:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (default ``os.environ``) unless the user
    chose a wait policy or torch (``modules``, default ``sys.modules``) is already imported.

    Returns the value set, or ``None`` where nothing was set. Costs a few dictionary lookups.
    """
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "torch" in modules or any(k in environ for k in USER_SETTINGS):
        return None
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "PASSIVE"
