"""Device choice, seeding, timing and peak memory: the one module that may mention `torch.cuda`.

The CLI calls `pick_device` once and passes the device down; everything else follows the tensors.
"""

import random
import re
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch


def pick_device(name: str = "auto") -> torch.device:
    """`auto` tries cuda, then mps, then cpu; any other name is checked to be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine; use cpu or auto")
    return device


def setup(device: torch.device) -> None:
    """Process-wide speed settings, called once by the CLI (never at import time)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def derive_seed(*keys: int) -> int:
    """A well-mixed 32-bit seed from integer keys, e.g. (seed, epoch)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; returns a generator for DataLoader shuffling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: numpy and python follow the worker's torch seed. Workers
    ignore Ctrl-C, so the main process can finish its step and save a checkpoint."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """torch's random state on the CPU and, for a CUDA device, on that device."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Mixed precision as one code path: `autocast()` and `scaler` (torch.amp's GradScaler)
    are no-ops with `amp="off"`. bf16 needs no scaler; fp16 does, and runs on CUDA only."""

    def __init__(self, device: torch.device, amp: str = "off") -> None:
        if amp not in AMP_DTYPES:
            raise ValueError(f"unknown --amp {amp!r}: use off, bf16 or fp16")
        if amp == "fp16" and device.type != "cuda":
            raise ValueError("--amp fp16 needs a CUDA device; on the CPU use --amp bf16")
        self.device_type, self.dtype = device.type, AMP_DTYPES[amp]
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype or torch.bfloat16,
                              enabled=self.dtype is not None)  # fmt: skip


def release_cached_memory(device: torch.device) -> None:
    """Return the CUDA allocator's cached blocks (after an out-of-memory error)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Timer:
    """Wall-clock seconds of a block, synchronising the device on entry and exit."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.seconds = 0.0

    def __enter__(self) -> "Timer":
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: the CUDA allocator's, or on Linux the process's resident high-water mark
    (elsewhere the CPU peak is the process's max RSS and cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM (Linux >= 4.0)
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    """Peak since the last reset (MiB): CUDA allocator peak, else the process's resident peak."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) / 2**10
    except (OSError, AttributeError):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS
