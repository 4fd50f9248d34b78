"""`scenelab bench models`: a training step of every registry model, at several sizes.

Each model trains on random batches with its own default optimiser (SGD for the CNNs, AdamW
with gradient clipping for the ViTs), as `scenelab train` would run it: median seconds per step,
images per second, and peak memory in a fresh process.
"""

import statistics
from dataclasses import dataclass
from functools import partial

import torch

from ..config import ModelConfig, OptimConfig
from ..document import format_table
from ..models import (
    MODELS,
    build_model,
    count_flops,
    count_parameters,
    model_spec,
    optim_defaults,
)
from ..optim import build_optimizer
from .config import ModelsBenchConfig
from .harness import fresh_peak_memory, random_batch, timed_steps


@dataclass(frozen=True)
class ModelTiming:
    model: str
    image_size: int
    params: int
    gflops: float  # forward, per image
    ms_per_step: float
    images_per_second: float
    peak_mb: float


def model_names(cfg: ModelsBenchConfig) -> list[str]:
    names = list(MODELS) if cfg.models == "all" else [n.strip() for n in cfg.models.split(",")]
    for name in names:
        model_spec(name)  # an unknown name fails here, before any timing
    return names


def _steps(
    name: str, size: int, batch_size: int, num_classes: int, device: torch.device, steps: int
) -> list[float]:
    torch.manual_seed(0)
    model_cfg = ModelConfig(model=name)
    optim = OptimConfig(**optim_defaults(model_cfg))
    model = build_model(model_cfg, num_classes, size).to(device).train()
    x, y = random_batch(batch_size, size, num_classes, device)
    return list(timed_steps(model, build_optimizer(model, optim), x, y, steps, optim.clip_grad))


def measure(cfg: ModelsBenchConfig, name: str, size: int, device: torch.device) -> ModelTiming:
    model = build_model(ModelConfig(model=name), cfg.num_classes, size)
    run = partial(_steps, name, size, cfg.batch_size, cfg.num_classes)
    seconds = statistics.median(run(device, cfg.warmup + cfg.steps)[cfg.warmup :])
    peak = float("nan")
    if cfg.memory_repeats:
        peak = fresh_peak_memory(partial(run, steps=cfg.memory_steps), device, cfg.memory_repeats)
    return ModelTiming(
        model=name,
        image_size=size,
        params=count_parameters(model),
        gflops=count_flops(model, size) / 1e9,
        ms_per_step=seconds * 1e3,
        images_per_second=cfg.batch_size / seconds,
        peak_mb=peak,
    )


def table(timings: list[ModelTiming]) -> str:
    """One row per model and size; time relative to SimpleNet at the same size when present."""
    base = {t.image_size: t.ms_per_step for t in timings if t.model == "simplenet"}
    rows = [
        [
            t.model,
            t.image_size,
            f"{t.params / 1e6:.2f}M",
            f"{t.gflops:.3f}",
            f"{t.ms_per_step:.0f}",
            f"{t.images_per_second:.0f}",
            f"{t.peak_mb:.0f}",
            f"{t.ms_per_step / base[t.image_size]:.2f}x" if t.image_size in base else "n/a",
        ]
        for t in timings
    ]
    header = ["model", "px", "params", "GFLOPs", "ms/step", "img/s", "peak MiB", "vs simplenet"]
    return format_table(header, rows)
