"""Device choice, DDP setup, seeding, timing and peak memory: the one module that may mention
`torch.cuda` or set up `torch.distributed`.

The CLI calls `pick_device` (or `init_distributed` under torchrun) once and passes the device
down; everything else follows the tensors. The collectives below (`all_reduce_`,
`broadcast_object`, `gather_objects`, `barrier`) do nothing in a single process, so library
code calls them unconditionally, as torchvision's references do.
"""

import os
import random
import re
import resource
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


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


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job: rank `rank` of `world` (alone: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that prints, logs and writes files."""
        return self.rank == 0


def init_distributed(name: str = "auto") -> tuple[Distributed, torch.device]:
    """The device, and under torchrun (WORLD_SIZE > 1 in the environment) this process's
    place after joining the process group: NCCL on CUDA, each process on the GPU of its
    LOCAL_RANK; gloo on the CPU. Alone, the same as `pick_device(name)`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(name)
    if world == 1:
        return Distributed(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"process {rank} needs GPU {local_rank}, but {torch.cuda.device_count()} are "
                "visible: start at most that many processes per node (--nproc-per-node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"torchrun runs on CUDA (NCCL) or the CPU (gloo), not {device.type}")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return Distributed(rank, world, local_rank), device


def close_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if _distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if _distributed() else 1


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum (or `max`) `tensor` over all processes, in place; returns it."""
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process when `flag` is true on any of them (alone: `flag`, no sync)."""
    if not _distributed():
        return bool(flag)
    return bool(all_reduce_(torch.tensor([float(flag)], device=device), "max").item())


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every process (a picklable object)."""
    if not _distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (`[obj]` alone)."""
    if not _distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if _distributed():
        dist.barrier()


@contextmanager
def main_first(main: bool) -> Iterator[None]:
    """Rank 0 runs the block first (a download, say); the others wait, then run it too."""
    if not main:
        barrier()
    yield
    if main:
        barrier()


def unwrap(model: nn.Module) -> nn.Module:
    """The module whose state dict a checkpoint holds: without DDP's wrapper (and
    `torch.compile`'s, when the model was compiled with `torch.compile(model)`)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


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
    """How the numbers of training and evaluation are laid out, as one code path: `autocast()`
    and `scaler` (torch.amp's GradScaler) are no-ops with `amp="off"`, and `memory_format` is
    the inputs' layout (`torch.channels_last` for a model converted to it, else as they come).
    bf16 needs no scaler; fp16 does, and runs on CUDA only."""

    def __init__(self, device: torch.device, amp: str = "off", *, channels_last: bool = False):
        if amp not in AMP_DTYPES:
            raise ValueError(f"unknown --amp {amp!r}: use off, bf16 or fp16")
        if amp == "fp16" and device.type != "cuda":
            raise ValueError("--amp fp16 needs a CUDA device; on the CPU use --amp bf16")
        self.device, self.dtype = device, AMP_DTYPES[amp]
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        self.memory_format = torch.channels_last if channels_last else torch.preserve_format

    def autocast(self) -> torch.autocast:
        dtype = self.dtype or torch.bfloat16  # unused when disabled
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.dtype is not None)


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
