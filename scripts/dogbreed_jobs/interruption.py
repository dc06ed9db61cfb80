"""Stopping at a batch boundary when asked (managed spot training sends SIGTERM).

The handler only sets a flag. Training stops at the next batch boundary, writes nothing for
the unfinished epoch (its start is the last checkpoint, and restarting the epoch from there
is what keeps the result identical) and exits with EXIT_INTERRUPTED (75, EX_TEMPFAIL: "try
again"). A signal during validation or the checkpoint write lets that epoch finish saving
first. SIGKILL loses at most the epoch in progress.
"""

from __future__ import annotations

import contextlib
import signal
import threading

import torch

from dogbreed_jobs.distributed import Runtime, all_reduce_sum

EXIT_INTERRUPTED = 75
# Under DDP a stop request has to be agreed on by all ranks (a collective, which also
# synchronises host and GPU), so it is checked every few batches rather than every one.
DISTRIBUTED_STOP_CHECK_INTERVAL = 8


class Interrupted(Exception):
    """Raised at the batch boundary where a stop request was seen; the message says where."""


class StopRequest:
    """Set by SIGTERM; the training loop polls it at batch boundaries."""

    def __init__(self):
        self.requested = False
        self.signal_name = ""

    def __call__(self, signum, _frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGTERM, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    def agreed(self, runtime: Runtime) -> bool:
        """True when any rank was asked to stop (a collective under DDP)."""
        if not runtime.distributed:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=runtime.device)
        return bool(all_reduce_sum(flag, runtime).item() > 0)

    def check(self, runtime: Runtime, step: int, where: str) -> None:
        """Raise Interrupted at `where` if asked to stop; under DDP only every few steps."""
        if runtime.distributed:
            if step % DISTRIBUTED_STOP_CHECK_INTERVAL == 0 and self.agreed(runtime):
                raise Interrupted(where)
        elif self.requested:
            raise Interrupted(where)
