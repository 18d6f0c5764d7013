"""CPU threads of the commands that run the model (`reconstruct`, `demo`, `eval predict`).

PyTorch's CPU kernels run on OpenMP threads, by default one per core, that spin while they wait
for each other at the end of every parallel region. When another process holds a core, the
spinning threads and the descheduled one stall each other and throughput collapses: on the
2-core VM the old default (2 threads, OpenMP's own waiting) streamed 65 frames at 0.3-1.0
frames/s where one thread did 1.6-5.9 (docs/RESULTS.md, "CPU threads of `reconstruct`").

So the console script asks OpenMP to let idle threads sleep (`prefer_passive_waiting`:
``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it; OpenMP reads it once, when torch
is first imported), and ``--threads auto`` (the default) takes every core this process may use
when waiting is passive, one fewer otherwise (at least 1), so that a competing busy process
finds a free core; on two cores or fewer it takes one thread. A sleeping thread is woken for
every parallel region, thousands a frame at the shipped model's size, and on the 2-core VM one
thread streamed the DAVIS clip faster than two sleeping ones idle (12.0 vs 8.9 frames/s at
128, 4.1 vs 3.8 at 256) and next to one or two busy processes (11.7 vs 10.7, 7.6 vs 5.3;
docs/RESULTS.md, "CPU threads of `reconstruct`"). ``--threads N`` takes N threads.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableMapping

__all__ = ["THREADS_HELP", "add_threads_argument", "apply_threads", "default_threads", "parse_threads",
           "passive_waiting", "prefer_passive_waiting", "usable_cores"]

THREADS_HELP = ("CPU threads for the model: a number, or auto (default: one on a machine of two cores or fewer; "
                "otherwise every core this process may use, as idle threads sleep (OMP_WAIT_POLICY=PASSIVE, which "
                "mem4d sets unless the environment says otherwise), one core fewer when they spin, so that another "
                "busy process does not stall every step; see docs/RESULTS.md). Only affects the CPU")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def passive_waiting(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether OpenMP's idle threads sleep (``OMP_WAIT_POLICY=PASSIVE`` in the environment)."""
    env = os.environ if environ is None else environ
    return env.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def default_threads(cores: int | None = None, passive: bool | None = None) -> int:
    """``auto``: one thread on two cores or fewer; more cores: every one when idle threads sleep,
    else one fewer."""
    cores = usable_cores() if cores is None else cores
    passive = passive_waiting() if passive is None else passive
    if cores <= 2:
        return 1
    return cores if passive else cores - 1


def parse_threads(text: str) -> int | None:
    """``"auto"`` -> None (resolved by `apply_threads`), ``"N"`` -> N >= 1; argparse errors otherwise."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads must be a number >= 1 or auto, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--threads must be >= 1 or auto, got {n}")
    return n


def add_threads_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--threads", type=parse_threads, default=None, metavar="N|auto", help=THREADS_HELP)


def apply_threads(threads: int | None) -> int:
    """Sets torch's intra-op threads (None: `default_threads`); returns the number set."""
    import torch

    n = default_threads() if threads is None else int(threads)
    torch.set_num_threads(n)
    return n


def prefer_passive_waiting(environ: MutableMapping[str, str] | None = None, torch_loaded: bool | None = None) -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it or torch is already imported.

    OpenMP reads the variable once, when torch is first imported, so the console script calls
    this before any subcommand imports torch; setting it later would only mislead
    `default_threads`. An explicit setting in the environment wins.
    """
    env = os.environ if environ is None else environ
    loaded = "torch" in sys.modules if torch_loaded is None else torch_loaded
    if not loaded:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
