"""Interruptions of a run: Ctrl-C, SIGTERM, and Slurm's SIGUSR2 before a time limit or preemption.

``install()`` makes SIGTERM raise :class:`Interrupted` (where nobody else handles it: under submitit its
own handler stays) and turns SIGUSR2 into a request: inside :func:`training` the unlearning loop finishes
its step, writes a checkpoint and calls :func:`hand_over`, which passes the signal to the handler that was
there before (submitit's: re-pickle the job, ``scontrol requeue``, exit) or, without one, stops the run
with :class:`Interrupted`; outside training the signal is handed over at once (finished stages are kept,
the current one is redone after the requeue). The CLI turns an interruption into one line and exit code
128 + signal number (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
from typing import Optional, Tuple


class Interrupted(BaseException):
    """The run was stopped by signal ``signum`` (a BaseException, like KeyboardInterrupt: no handler swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_previous_usr2 = signal.SIG_DFL
_pending: Optional[Tuple[int, object]] = None
_training = False


def signal_name(err: BaseException) -> str:
    return "SIGINT" if isinstance(err, KeyboardInterrupt) else signal.Signals(err.signum).name


def exit_code(err: BaseException) -> int:
    return 128 + (signal.SIGINT if isinstance(err, KeyboardInterrupt) else err.signum)


def _raise(signum, frame) -> None:
    raise Interrupted(signum)


def _request_checkpoint(signum, frame) -> None:
    global _pending
    _pending = (signum, frame)
    if not _training:
        hand_over()


def install() -> None:
    """Install the handlers (main thread only; a no-op elsewhere)."""
    global _previous_usr2
    with contextlib.suppress(ValueError):  # not the main thread
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _raise)
        previous = signal.getsignal(signal.SIGUSR2)
        if previous is not _request_checkpoint:
            _previous_usr2 = previous
            signal.signal(signal.SIGUSR2, _request_checkpoint)


def checkpoint_requested() -> bool:
    """Whether a SIGUSR2 asked the training loop for a checkpoint."""
    return _pending is not None


def hand_over() -> None:
    """Pass the pending SIGUSR2 on to the handler installed before ours (submitit requeues and exits), or stop the
    run with :class:`Interrupted` when there is none."""
    global _pending
    signum, frame = _pending or (signal.SIGUSR2, None)
    _pending = None
    if callable(_previous_usr2):
        _previous_usr2(signum, frame)
    raise Interrupted(signum)


@contextlib.contextmanager
def training():
    """While the unlearning loop runs, SIGUSR2 waits for the end of the step (and its checkpoint)."""
    global _training
    _training = True
    try:
        yield
    finally:
        _training = False
