"""Stopping and timing a training run: `StopRequest` (SIGINT and SIGTERM stop after the
current step and save) and `process_age` (a --time-budget counts from the process's start)."""

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StopRequest:
    """SIGINT (Ctrl-C) or SIGTERM asks training to stop after the current step and save a
    checkpoint; a second Ctrl-C aborts at once (under torchrun, the SIGTERM that torchrun sends
    after a Ctrl-C does not). Call it to ask whether a stop was requested."""

    def __init__(self, *, say: bool = True) -> None:
        self.signum, self.say = 0, say  # say: print the notice (rank 0 only, under torchrun)

    def __call__(self) -> bool:
        return bool(self.signum)

    @contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self._handle) for s in signals}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signum:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # Ctrl-C twice: stop now
            return  # already stopping
        self.signum = signum
        if self.say:
            name = signal.Signals(signum).name
            print(
                f"\n{name}: stopping after this step to save a checkpoint (Ctrl-C again to "
                "abort at once)",
                file=sys.stderr,
                flush=True,
            )


def process_age() -> float:
    """Seconds since this process started (Python's start-up and imports included), from
    /proc on Linux; 0 where that cannot be read."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0
