"""`scenelab bench train`: the training loop's speed switches against plain training.

Every variant trains the same model (seed 0) with its default optimiser through
`train_one_epoch`, on random images already in memory, so only the step itself is measured:
`channels_last`, `bf16` (autocast), `accum2` (two half batches per step), `ema` (a weight average
updated every step) and `compile` (torch.compile), alone or joined with `+`. Passes of the
variants are taken in turns, so the machine's drift falls on all of them alike.
"""

import statistics
from collections.abc import Callable

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, TensorDataset

from ..adversarial import CrossEntropy
from ..config import ModelConfig, OptimConfig
from ..document import format_table
from ..models import build_model, optim_defaults
from ..optim import build_optimizer
from ..runtime import Precision, Timer
from ..train import train_one_epoch
from .config import TrainBenchConfig
from .harness import random_batch

SWITCHES = ("plain", "channels_last", "bf16", "accum2", "ema", "compile")


def parse_variants(text: str) -> list[str]:
    variants = [v.strip() for v in text.split(",") if v.strip()]
    for variant in variants:
        unknown = set(variant.split("+")) - set(SWITCHES)
        if unknown:
            raise ValueError(
                f"unknown speed switch {', '.join(sorted(unknown))} in --variants; "
                f"choose from {', '.join(SWITCHES)}, joined with +"
            )
    return variants if "plain" in variants else ["plain", *variants]


def one_pass(cfg: TrainBenchConfig, variant: str, device: torch.device) -> Callable[[], None]:
    """A function that trains `cfg.steps` optimizer steps with the switches of `variant`."""
    switches = set(variant.split("+"))
    torch.manual_seed(0)
    model_cfg = ModelConfig(model=cfg.model)
    model = build_model(model_cfg, cfg.num_classes, cfg.image_size).to(device)
    amp = "bf16" if "bf16" in switches else "off"
    precision = Precision(device, amp, channels_last="channels_last" in switches)
    model = model.to(memory_format=precision.memory_format)
    optim = OptimConfig(**optim_defaults(model_cfg))
    optimizer = build_optimizer(model, optim)
    compiled = torch.compile(model) if "compile" in switches else model
    accum = 2 if "accum2" in switches else 1
    x, y = random_batch(cfg.batch_size * cfg.steps, cfg.image_size, cfg.num_classes, device)
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg.batch_size // accum)
    ema = None
    if "ema" in switches:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)

    def run() -> None:
        train_one_epoch(
            compiled,
            loader,
            optimizer,
            CrossEntropy(),
            device=device,
            precision=precision,
            accum_steps=accum,
            clip_grad=optim.clip_grad,
            on_step=[lambda _: ema.update_parameters(model)] if ema else [],
        )

    return run


def step_times(cfg: TrainBenchConfig, device: torch.device) -> dict[str, float]:
    """Median seconds per optimizer step of each variant."""
    passes = {v: one_pass(cfg, v, device) for v in parse_variants(cfg.variants)}
    for run in passes.values():
        run()  # warm-up: compilation, allocator, oneDNN primitive caches
    seconds: dict[str, list[float]] = {v: [] for v in passes}
    for _ in range(cfg.repeats):
        for variant, run in passes.items():
            with Timer(device) as timer:
                run()
            seconds[variant].append(timer.seconds / cfg.steps)
    return {v: statistics.median(s) for v, s in seconds.items()}


def table(times: dict[str, float], batch_size: int) -> str:
    plain = times["plain"]
    rows = [
        [v, f"{s * 1e3:.1f}", f"{batch_size / s:.0f}", f"{plain / s:.2f}x"]
        for v, s in times.items()
    ]
    return format_table(["variant", "ms/step", "img/s", "speed vs plain"], rows)
