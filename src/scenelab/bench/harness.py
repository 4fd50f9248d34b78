"""The shared harness of the benchmarks: timed training steps, peak memory measured in fresh
processes (so one variant's allocations cannot hide another's) and ratios."""

import statistics
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch
import torch.nn.functional as F
from torch import nn

from .. import runtime
from ..config import ModelConfig
from ..explain import predict
from ..models import build_model


def random_batch(batch_size: int, size: int, num_classes: int, device: torch.device):
    x = torch.rand(batch_size, 3, size, size, device=device)
    return x, torch.randint(0, num_classes, (batch_size,), device=device)


def model_and_images(
    name: str, num_classes: int, image_size: int, batch_size: int, device: torch.device
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A randomly initialised (seed 0) registry model in eval mode, random images for it and
    its predictions: the subject of the explain and attack benches."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(model=name), num_classes, image_size).to(device).eval()
    x = torch.rand(batch_size, 3, image_size, image_size, device=device)
    return model, x, predict(model, x)


def timed_steps(
    model: nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, steps: int, clip_grad: float = 0
) -> Iterator[float]:
    """Yields the seconds of each training step (forward, backward, clipping, update)."""
    for _ in range(steps):
        with runtime.Timer(x.device) as timer:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
        yield timer.seconds


def paired_ms(
    ours: Callable, theirs: Callable, arg: object, repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median ms of `ours(arg)` and `theirs(arg)`, timed in alternating order after one
    warm-up call each, so the machine's drift over the run falls on both alike. Warnings of
    the reference libraries (captum's "did not already require gradients") are silenced."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeats + 1):
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            with warnings.catch_warnings(), runtime.Timer(device) as timer:
                warnings.simplefilter("ignore")
                (ours, theirs)[k](arg)
            if i > 0:  # the first round warms up
                times[k].append(timer.seconds * 1e3)
    return statistics.median(times[0]), statistics.median(times[1])


def _memory_probe(run: Callable[[torch.device], object], device: str) -> float:
    """In a fresh process: peak memory (MiB) of `run(device)` above the post-import level."""
    dev = torch.device(device)
    runtime.reset_peak_memory(dev)
    baseline = runtime.peak_memory_mb(dev)
    run(dev)
    return runtime.peak_memory_mb(dev) - baseline


def fresh_peak_memory(
    run: Callable[[torch.device], object], device: torch.device, repeats: int
) -> float:
    """Median over `repeats` fresh processes of the peak memory (MiB) of `run(device)`.

    `run` must pickle (a module-level function, or a functools.partial of one).
    """
    peaks = []
    for _ in range(repeats):
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            peaks.append(pool.submit(_memory_probe, run, str(device)).result())
    return statistics.median(peaks)


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference > 0 else "n/a"
