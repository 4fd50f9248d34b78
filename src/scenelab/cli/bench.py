"""`scenelab bench conv|models|explain|attack|train|data`: tables and ratios from one run."""

import argparse
import csv
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .. import runtime
from ..bench import attack as attack_bench
from ..bench import conv, models
from ..bench import data as data_bench
from ..bench import explain as explain_bench
from ..bench import train as train_bench
from ..bench.config import (
    AttackBenchConfig,
    ConvBenchConfig,
    DataBenchConfig,
    ExplainBenchConfig,
    ModelsBenchConfig,
    TrainBenchConfig,
)
from .flags import given


def _config_and_device(args: argparse.Namespace, cls: type) -> tuple[Any, torch.device]:
    """The bench's config from the flags given, and its device, set up."""
    cfg = cls(**given(args, cls))
    device = runtime.pick_device(cfg.device)
    runtime.setup(device)
    return cfg, device


def cmd_bench_conv(args: argparse.Namespace) -> int:
    cfg, device = _config_and_device(args, ConvBenchConfig)
    print(
        f"Benchmark: {cfg.model} training steps, batch {cfg.batch_size}, "
        f"{' and '.join(map(str, cfg.sizes))} px, "
        f"{cfg.num_classes} classes, on {device} ({torch.get_num_threads()} threads), "
        f"torch {torch.__version__}\n  time: median of {cfg.steps} steps after {cfg.warmup} "
        f"warm-up; memory: peak above the post-import level, median of {cfg.memory_repeats} "
        "fresh processes",
        flush=True,
    )
    for size in cfg.sizes:
        print(f"\n{size} px", flush=True)
        results: dict[str, tuple[float, float]] = {}
        for variant in conv.VARIANTS:
            if not variant.onednn and device.type != "cpu":
                continue  # oneDNN is nn.Conv2d's CPU backend
            ms = conv.step_time(cfg, variant, device, size) * 1e3
            mb = conv.peak_memory(cfg, variant, device, size) if cfg.memory_repeats else math.nan
            results[variant.label] = (ms, mb)
            print(f"  {variant.label}: {ms:.1f} ms/step, peak {mb:.0f} MiB", flush=True)
        print(f"\n{size} px:\n" + conv.step_table(results, cfg.batch_size))
        if cfg.layer_repeats:
            repeats = cfg.layer_repeats
            print(f"\nPer layer at {size} px (ms, median of {repeats}; batch {cfg.batch_size}):")
            print(conv.layer_table(list(conv.layer_times(cfg, device, size))))
    return 0


def cmd_bench_models(args: argparse.Namespace) -> int:
    cfg, device = _config_and_device(args, ModelsBenchConfig)
    names = models.model_names(cfg)
    print(
        f"Benchmark: training steps of {', '.join(names)} at {', '.join(map(str, cfg.sizes))} px, "
        f"batch {cfg.batch_size}, {cfg.num_classes} classes, on {device} "
        f"({torch.get_num_threads()} threads), torch {torch.__version__}\n  time: median of "
        f"{cfg.steps} steps after {cfg.warmup} warm-up, each model with its default optimiser; "
        f"memory: peak above the post-import level in a fresh process",
        flush=True,
    )
    timings = []
    for size in cfg.sizes:
        for name in names:
            timings.append(models.measure(cfg, name, size, device))
            t = timings[-1]
            print(f"  {name} {size} px: {t.ms_per_step:.0f} ms/step, peak {t.peak_mb:.0f} MiB")
    print("\n" + models.table(timings))
    out = Path(cfg.out_dir) / "bench" / f"models-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(timings[0])))
        writer.writeheader()
        writer.writerows(asdict(t) for t in timings)
    print(f"\nResults: {out}")
    return 0


def cmd_bench_explain(args: argparse.Namespace) -> int:
    cfg, device = _config_and_device(args, ExplainBenchConfig)
    print(
        f"Benchmark: saliency methods, scenelab vs captum, {cfg.model} on a batch of "
        f"{cfg.batch_size} at {cfg.image_size} px, on {device} ({torch.get_num_threads()} "
        f"threads); smoothgrad {cfg.samples} samples, integrated gradients {cfg.steps} steps; "
        f"median of {cfg.repeats} calls each, alternating, after one warm-up\n",
        flush=True,
    )
    print(explain_bench.table(explain_bench.method_times(cfg, device)))
    return 0


def cmd_bench_attack(args: argparse.Namespace) -> int:
    cfg, device = _config_and_device(args, AttackBenchConfig)
    print(
        f"Benchmark: attacks, scenelab vs torchattacks, {cfg.model} ({cfg.num_classes} classes) "
        f"on a batch of {cfg.batch_size} at {cfg.image_size} px, on {device} "
        f"({torch.get_num_threads()} threads); eps {cfg.eps * 255:g}/255 (L2: "
        f"{attack_bench.L2_EPS}), step eps/4, no random start; median of {cfg.repeats} calls "
        "each, alternating, after one warm-up\n",
        flush=True,
    )
    print(attack_bench.table(attack_bench.attack_times(cfg, device)))
    print(f"\n{attack_bench.NOTE}")
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    cfg, device = _config_and_device(args, TrainBenchConfig)
    print(
        f"Benchmark: training-loop speed switches, {cfg.model} on batches of {cfg.batch_size} at "
        f"{cfg.image_size} px from memory, on {device} ({torch.get_num_threads()} threads, CPU "
        f"capability {torch.backends.cpu.get_cpu_capability()}), torch {torch.__version__}; "
        f"median of {cfg.repeats} passes of {cfg.steps} steps each, variants in turns, after "
        "one warm-up pass\n",
        flush=True,
    )
    print(train_bench.table(train_bench.step_times(cfg, device), cfg.batch_size))
    print(
        "\nbf16 is fast on CPUs with AMX (Sapphire Rapids and later) or AVX512-BF16; elsewhere "
        "it is emulated and slower than float32."
    )
    return 0


def cmd_bench_data(args: argparse.Namespace) -> int:
    cfg, device = _config_and_device(args, DataBenchConfig)
    cache = ", images cached in memory" if cfg.cache_images else ""
    print(
        f"Benchmark: the input pipeline, {cfg.data} train images at {cfg.image_size} px "
        f"({cfg.augment} augmentation{cache}), batches of {cfg.batch_size}, {cfg.batches} timed "
        f"batches each; {cfg.model} on {device} ({torch.get_num_threads()} threads)\n",
        flush=True,
    )
    subset, num_classes = data_bench.measured_images(cfg)
    rates = data_bench.loader_rates(cfg, subset, device)
    model_only, end_to_end = data_bench.training_rates(cfg, subset, num_classes, device)
    print(data_bench.table(rates, model_only, end_to_end))
    return 0
