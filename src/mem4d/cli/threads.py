"""CPU threads of the commands that run the model (`reconstruct`, `demo`, `eval predict`).

PyTorch's CPU kernels run on one OpenMP thread per core by default. On a machine where any
other process is busy, those threads wait for each other at every parallel region while the
other process holds a core, and throughput collapses (measured on the 2-core VM: 65 frames at
0.5 frames/s instead of 16; docs/RESULTS.md, "CPU threads of reconstruct"). So the default
here leaves one core free: ``--threads auto`` = the cores this process may use minus one (at
least 1), and `prefer_passive_waiting` makes idle OpenMP threads sleep instead of spinning
(``OMP_WAIT_POLICY=PASSIVE`` unless the user set it), which keeps the collapse away when more
than one other process competes. ``--threads N`` takes N threads.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["THREADS_HELP", "add_threads_argument", "apply_threads", "default_threads", "parse_threads",
           "prefer_passive_waiting", "usable_cores"]

THREADS_HELP = ("CPU threads for the model: a number, or auto (default: the cores this process may use minus "
                "one, at least 1, so that another busy process does not stall every step; see "
                "docs/RESULTS.md). Only affects the CPU")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(cores: int | None = None) -> int:
    """``auto``: one core left for the rest of the machine, at least one thread."""
    cores = usable_cores() if cores is None else cores
    return max(1, cores - 1)


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


def prefer_passive_waiting(environ: dict[str, str] | os._Environ | None = None) -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set: idle OpenMP threads sleep rather than spin.

    OpenMP reads it once, when torch is first imported, so the console script calls this
    before any subcommand imports torch; an explicit setting in the environment wins.
    """
    env = os.environ if environ is None else environ
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
