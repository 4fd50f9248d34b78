"""The process around a command: `StopRequest` (SIGINT and SIGTERM stop after the current step
and save), `process_age` (a --time-budget counts from the process's start) and
`restart_with_tuned_allocator` (glibc's allocator set up before the command runs)."""

import os
import signal
import sys
from collections.abc import Iterator, Mapping
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


# glibc's per-thread cache of freed small blocks (tcache: up to 7 a size) is never merged with
# its neighbours. Blocks carved from a freed activation and parked there split the space that
# the next batch's activations need, so in evaluation loops fed by loader workers the heap can
# grow by hundreds of MB of free memory (docs/convolution.md, "Memory"). Without the cache
# small allocations take the ordinary free lists; no measurable cost in training or evaluation.
ALLOCATOR_TUNABLES = "glibc.malloc.tcache_count=0"


def allocator_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to restart this process in with `ALLOCATOR_TUNABLES`, or None where
    nothing should change: not glibc, or GLIBC_TUNABLES already set (the user's own choice,
    even empty, or this process's second start)."""
    if "GLIBC_TUNABLES" in environ or not _glibc():
        return None
    return {**environ, "GLIBC_TUNABLES": ALLOCATOR_TUNABLES}


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False


def restart_with_tuned_allocator() -> None:
    """Re-run this process's own command line (same pid, same arguments) with glibc's tunables
    read at start-up set as `allocator_environment` says; returns where nothing is to change.
    Settings that glibc reads only when a process starts cannot be changed from inside it."""
    environ = allocator_environment(os.environ)
    if environ is None or not sys.executable or not sys.orig_argv:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, environ)
