"""Interruptions of a run: Ctrl-C, SIGTERM, and Slurm's SIGUSR2 before a time limit or preemption.

``install()`` makes SIGTERM raise :class:`Interrupted` (where nobody else handles it: under submitit its
own handler stays) and turns SIGUSR2 into a request: inside :func:`training` the unlearning loop finishes
its step, writes a checkpoint and calls :func:`hand_over`, which passes the signal to the handler that was
there before (submitit's: re-pickle the job, ``scontrol requeue``, exit) or, without one, stops the run
with :class:`Interrupted`; outside training the signal is handed over at once (finished stages are kept,
the current one is redone after the requeue). :func:`run_ranks` runs ``torchrun`` for a multi-process run and
forwards these signals to its ranks. The CLI turns an interruption into one line and exit code
128 + signal number (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import List, Optional, Tuple


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


def _torchrun_child() -> None:
    """In the forked torchrun, before exec: ignore SIGUSR2 and get SIGTERM if the launcher dies (Linux), so that
    ranks in their own session never outlive a killed launcher."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _relay(stream, stopping) -> None:
    """Copy the ranks' stderr to ours; once they are being stopped, only their one-line ``error:`` reports
    (torchrun's own traceback about the signal it forwarded says nothing the user needs)."""
    out = getattr(sys.stderr, "buffer", None)
    for line in iter(stream.readline, b""):
        if out is not None and (not stopping() or line.startswith(b"error:")):
            out.write(line)
            out.flush()


def run_ranks(cmd: List[str]) -> int:
    """Run the ``torchrun`` command ``cmd`` and return its exit code, forwarding signals while its ranks run.

    torchrun starts in its own session with SIGUSR2 ignored (it would die of it; its ranks install their own
    handler over the inherited disposition) and is sent SIGTERM should the launcher die. A SIGUSR2 goes to every process of that session: each rank
    checkpoints after the current step and stops, then the signal is handed over here (submitit requeues the
    job). SIGINT / SIGTERM go to torchrun, which stops its ranks; then :class:`Interrupted` is raised. The ranks'
    stderr is relayed (:func:`_relay`), so that an interruption still ends in rank 0's one line.
    """
    global _pending
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_torchrun_child, stderr=subprocess.PIPE)
    stops: List[int] = []
    relay = threading.Thread(target=_relay, args=(proc.stderr, lambda: bool(stops) or _pending is not None),
                             daemon=True)
    relay.start()

    def forward(signum, frame):
        global _pending
        if signum == signal.SIGUSR2:
            _pending = (signum, frame)
            os.killpg(proc.pid, signum)
        else:
            stops.append(signum)
            proc.send_signal(signum)

    saved = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
            saved[sig] = signal.signal(sig, forward)
        code = proc.wait()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # we are leaving for another reason: do not orphan the ranks
            proc.terminate()
            proc.wait()
    relay.join(timeout=10)
    if _pending is not None:
        hand_over()
    if stops:
        raise Interrupted(stops[0])
    return code
