"""Stopping at a step boundary on a signal: SIGTERM (SLURM's preemption and time limit, ``kill``), SIGUSR1/SIGUSR2
(the early-warning signals SLURM sends when asked, ``--signal``; submitit asks for SIGUSR2) and the first Ctrl-C.

A signal only sets a flag; both engines look at it after every optimizer step, write a checkpoint of that step and
raise :class:`StopRequested`, so the run folder says "interrupted" and a relaunch resumes exactly there. Handlers that
were installed before (submitit's requeue on SIGUSR2) are called afterwards by :func:`chain`. Once a stop was
requested, no further job starts in this process.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)


class StopRequested(Exception):
    """Training stopped on a signal after checkpointing; ``signum`` is the signal."""

    def __init__(self, signum: int, step: int | None = None):
        self.signum, self.step = int(signum), step
        where = f" at step {step}" if step is not None else ""
        super().__init__(f"stopped by {signal.Signals(self.signum).name}{where}")


_state = {"signum": None, "previous": {}, "installed": False}


def _handler(signum, frame) -> None:
    if _state["signum"] is None:
        _state["signum"] = int(signum)
    if signum == signal.SIGINT:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once


def install() -> None:
    """Install the flag-setting handlers (main thread only; idempotent), remembering the previous ones."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        _state["previous"][sig] = signal.getsignal(sig)
        signal.signal(sig, _handler)
    _state["installed"] = True


def requested() -> int | None:
    """The signal received, or ``None``."""
    return _state["signum"]


def check(step: int | None = None) -> None:
    """Raise :class:`StopRequested` if a signal arrived (call after the checkpoint of a step)."""
    if _state["signum"] is not None:
        raise StopRequested(_state["signum"], step)


def chain(err: StopRequested) -> None:
    """Hand the signal to the handler that was installed before ours (e.g. submitit's requeue on SIGUSR2), if it
    was a Python function."""
    previous = _state["previous"].get(err.signum)
    if callable(previous) and previous is not signal.default_int_handler:
        previous(err.signum, None)
