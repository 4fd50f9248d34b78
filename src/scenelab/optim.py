"""Optimiser, learning-rate schedule and weight averages (EMA).

The schedule is per iteration: linear warm-up from lr/warmup_steps (the first step is not at
lr 0) to the peak, then cosine decay to `min_lr_ratio * lr`; under a time budget the cosine
runs on the budget's progress instead of a fixed step count. Weight decay skips tensors with
fewer than two dimensions (biases, norm weights; nanoGPT's rule) and position embeddings,
unless `decay_all` (the course template decays every parameter).
"""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .config import OptimConfig


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Trainable parameters in up to four groups: head or backbone (lr x backbone_lr_scale),
    with or without weight decay (none for tensors under 2-D and the names the model's
    `no_weight_decay()` returns, e.g. position embeddings; timm's convention)."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decay = cfg.decay_all or (p.ndim >= 2 and name not in skip)
            key = (name.startswith("head."), decay)
            groups.setdefault(key, []).append(p)
    return [
        {
            "params": params,
            "lr": cfg.lr * (1.0 if head else cfg.backbone_lr_scale),
            "weight_decay": cfg.weight_decay if decay else 0.0,
        }
        for (head, decay), params in sorted(groups.items(), reverse=True)  # head first
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd or adamw")


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return annealed((step - warmup_steps) / max(total_steps - warmup_steps, 1), min_ratio)


def annealed(progress: float, min_ratio: float = 0.0) -> float:
    """The cosine from 1 at progress 0 to `min_ratio` at progress 1 (and after)."""
    cosine = 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return min_ratio + (1 - min_ratio) * cosine


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: OptimConfig,
    *,
    steps_per_epoch: int,
    epochs: int,
    progress: Callable[[int], float] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule over `epochs` epochs; or, given `progress(step)` (a time budget's, 0 to
    1), the warm-up's linear ramp until the cosine on that progress falls below it (the cosine
    counts from step 0, as timm's does without a warm-up prefix, so that a budget too short
    for the warm-up still ends annealed)."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    total = epochs * steps_per_epoch

    def factor(step: int) -> float:
        return lr_factor(step, warmup_steps=warmup, total_steps=total, min_ratio=cfg.min_lr_ratio)

    def factor_on_progress(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
        return min(ramp, annealed(progress(step), cfg.min_lr_ratio))

    schedule = factor if progress is None else factor_on_progress
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def weight_average(model: nn.Module, decay: float, saved: dict | None) -> AveragedModel | None:
    """`--ema-decay`: the exponential moving average of the weights (None when 0)."""
    if not decay:
        return None
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    if saved:
        ema.load_state_dict(saved)
    return ema
