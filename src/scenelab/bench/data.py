"""`scenelab bench data`: is the input pipeline fast enough to keep the model busy?

Three measurements in one run, on the first images of the train split: decoding and
augmentation alone (images/s for each worker count), a training step alone on batches already
in memory (the model-only rate), and training end to end from the loader. The last two give the
ratio that matters: end-to-end images/s as a share of what the model could take.
"""

import torch
from torch.utils.data import Subset

from ..adversarial import CrossEntropy
from ..config import DataConfig, ModelConfig, OptimConfig
from ..data import build_dataset, build_loader
from ..data.cache import cache_images
from ..data.transforms import resize_size
from ..document import format_table
from ..models import build_model, optim_defaults
from ..optim import build_optimizer
from ..runtime import Timer
from ..train import train_one_epoch
from .config import DataBenchConfig
from .harness import paired_ms


def _data_config(cfg: DataBenchConfig, workers: int) -> DataConfig:
    return DataConfig(
        data=cfg.data,
        data_root=cfg.data_root,
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        workers=workers,
        augment=cfg.augment,
        batch_augment=cfg.batch_augment,
    )


def measured_images(cfg: DataBenchConfig) -> tuple[Subset, int]:
    """The first images of the train split that every measurement reads (decoded into memory
    once, with `cache_images`), and the class count."""
    workers = max(cfg.workers)
    dataset, classes = build_dataset(_data_config(cfg, workers), "train", augment=True)
    count = min(len(dataset), (cfg.batches + 1) * cfg.batch_size)
    if cfg.cache_images:  # only the measured images
        cache_images(dataset, resize_size(cfg.image_size), limit=count)
    return Subset(dataset, range(count)), len(classes)


def _images_per_second(run, images: int, device: torch.device) -> float:
    with Timer(device) as timer:
        run()
    return images / timer.seconds


def loader_rates(cfg: DataBenchConfig, subset: Subset, device: torch.device) -> dict[int, float]:
    """Images/s of decoding and augmenting `subset` alone, per worker count."""
    rates = {}
    for workers in cfg.workers:
        loader = build_loader(subset, _data_config(cfg, workers), train=True, device=device)
        batches = iter(loader)
        next(batches)  # warm-up: workers start, first batch
        rates[workers] = _images_per_second(
            lambda b=batches: sum(1 for _ in b), len(subset) - cfg.batch_size, device
        )
    return rates


def training_rates(
    cfg: DataBenchConfig, subset: Subset, num_classes: int, device: torch.device
) -> tuple[float, float]:
    """(model-only, end-to-end) training images/s on `subset` with the most workers measured."""
    workers = max(cfg.workers)
    model_cfg = ModelConfig(model=cfg.model)
    # Learning rate 0: a step costs the same, and the repeated passes over the same few batches
    # would otherwise drive the loss to NaN.
    optim = OptimConfig(**(optim_defaults(model_cfg) | {"lr": 0.0}))
    torch.manual_seed(0)
    model = build_model(model_cfg, num_classes, cfg.image_size).to(device)
    optimizer = build_optimizer(model, optim)
    loader = build_loader(subset, _data_config(cfg, workers), train=True, device=device)
    batches = [(x.to(device), y.to(device)) for x, y in loader]  # the same images, in memory;
    # the loader's workers stay up for the end-to-end pass (persistent)

    objective = CrossEntropy()

    def step(data) -> None:
        train_one_epoch(model, data, optimizer, objective, device=device, clip_grad=optim.clip_grad)

    images = sum(len(y) for _, y in batches)
    # In turns, the median of `repeats` passes each (one pass alone varies by 20-30% here).
    end_ms, model_ms = paired_ms(
        lambda _: step(loader), lambda _: step(batches), None, cfg.repeats, device
    )
    return images / model_ms * 1e3, images / end_ms * 1e3


def table(rates: dict[int, float], model_only: float, end_to_end: float) -> str:
    rows = [
        [f"decode + augment, {w} workers", f"{r:.0f}", f"{r / model_only:.2f}x"]
        for w, r in rates.items()
    ]
    rows += [
        ["training step alone (batches in memory)", f"{model_only:.0f}", "1.00x"],
        ["training end to end (loader)", f"{end_to_end:.0f}", f"{end_to_end / model_only:.2f}x"],
    ]
    return format_table(["measurement", "images/s", "vs model only"], rows)
