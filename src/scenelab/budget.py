"""`--time-budget`: how many epochs fit, from a few timed steps on a copy of the model."""

import copy
import math
from dataclasses import replace

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from .adversarial import build_objective
from .config import RunConfig
from .data import build_loader
from .evaluation import evaluate, robust_accuracy
from .optim import build_optimizer
from .runtime import Timer
from .train import train_one_epoch


def epochs_for_budget(
    budget_seconds: float,
    epoch_seconds: float,
    *,
    margin: float = 0.9,
    at_least: int = 1,
    at_most: int = 10_000,
) -> int:
    """The whole epochs that fit in `margin` of the budget, within [at_least, at_most]."""
    fit = int(margin * max(budget_seconds, 0.0) // max(epoch_seconds, 1e-9))
    return max(at_least, min(at_most, fit))


def estimate_epoch_seconds(
    cfg: RunConfig,
    model: nn.Module,
    train_set,
    val_set,
    *,
    device: torch.device,
    steps: int = 6,
    robust_images: int = 0,
    world: int = 1,
) -> float:
    """Seconds one epoch takes (training, evaluation, robust evaluation), timed on a copy of
    the model after one warm-up pass. Each part is timed over `steps` and `2 * steps` batches:
    the difference is the cost per batch, the rest a fixed cost per pass (starting workers),
    and the epoch is that fixed cost plus its batches. With `world` > 1 (DDP), one process's
    share: batches of batch_size / world images, 1 / world of each split."""
    probe = copy.deepcopy(model)
    optimizer = build_optimizer(probe, cfg.optim)
    objective = build_objective(cfg)
    batch = cfg.data.batch_size // world
    data = replace(cfg.data, batch_size=batch)

    def loader(dataset, train: bool, n: int) -> DataLoader:
        part = Subset(dataset, range(min(len(dataset), n * batch)))
        return build_loader(part, data, train=train, device=device)

    def extrapolate(dataset, train: bool, run, images: int) -> float:
        short, long = loader(dataset, train, steps), loader(dataset, train, 2 * steps)
        run(short)  # warm-up: workers, allocator, kernels
        seconds = []
        for part in (short, long):
            with Timer(device) as timer:
                run(part)
            seconds.append(timer.seconds)
        extra = len(long.dataset) - len(short.dataset)
        if extra == 0:  # the whole split fits in the short pass
            return seconds[0] * math.ceil(images / world) / len(short.dataset)
        per_image = max(seconds[1] - seconds[0], 0.0) / extra
        fixed = max(seconds[0] - per_image * len(short.dataset), 0.0)
        return fixed + per_image * math.ceil(images / world)

    def train(part: DataLoader) -> None:
        train_one_epoch(probe, part, optimizer, objective, device=device)

    def validate(part: DataLoader) -> None:
        evaluate(probe, part, device=device, tta=cfg.train.tta)

    def attack(part: DataLoader) -> None:
        robust_accuracy(probe, part, cfg, device=device)

    seconds = extrapolate(train_set, True, train, len(train_set))
    seconds += extrapolate(val_set, False, validate, len(val_set))
    if robust_images:
        robust = Subset(val_set, range(min(robust_images, len(val_set))))
        seconds += extrapolate(robust, False, attack, robust_images)
    return seconds
