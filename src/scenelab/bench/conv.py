"""`scenelab bench conv`: nn.Conv2d, the hand-written UnfoldConv2d and the course's layer.

Trains a CNN with nn.Conv2d, with UnfoldConv2d and with the course assignment's layer
(`CourseConv2d`, its unfolded input saved for backward) on random batches in the same process (time
per step), at each size, measures each variant's peak memory in fresh processes, and times every
conv layer's forward and backward on its own. Ratios are against the default nn.Conv2d measured in
the same run, never against numbers from another machine.
"""

import statistics
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import nn

from .. import runtime
from ..config import ModelConfig, OptimConfig
from ..document import format_table
from ..models import CONV_LAYERS, build_model, convert_conv
from ..optim import build_optimizer
from .config import ConvBenchConfig
from .harness import fresh_peak_memory, random_batch, ratio, timed_steps


@dataclass(frozen=True)
class Variant:
    label: str
    conv: str  # CONV_LAYERS key
    channels_last: bool = False
    onednn: bool = True  # False: nn.Conv2d's own im2col path instead of oneDNN (CPU only)


VARIANTS = (
    Variant("nn.Conv2d", "native"),
    Variant("nn.Conv2d, oneDNN off", "native", onednn=False),
    Variant("UnfoldConv2d", "unfold"),
    Variant("course layer", "course"),
    Variant("nn.Conv2d, channels_last", "native", channels_last=True),
    Variant("UnfoldConv2d, channels_last", "unfold", channels_last=True),
)


# The ratios printed under the table: (variant, reference)
RATIOS = (
    ("UnfoldConv2d", "nn.Conv2d"),
    ("course layer", "nn.Conv2d"),
    ("UnfoldConv2d, channels_last", "nn.Conv2d, channels_last"),
    ("UnfoldConv2d", "nn.Conv2d, oneDNN off"),
    ("UnfoldConv2d", "course layer"),
)


@contextmanager
def onednn(enabled: bool) -> Iterator[None]:
    """torch.backends.mkldnn.flags without its warning about TF32 on Intel GPUs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with torch.backends.mkldnn.flags(enabled=enabled):
            yield


def _setup(cfg: ConvBenchConfig, variant: Variant, device: torch.device, size: int):
    torch.manual_seed(0)
    model = build_model(ModelConfig(model=cfg.model, conv=variant.conv), cfg.num_classes)
    x, y = random_batch(cfg.batch_size, size, cfg.num_classes, device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model = model.to(device).train()
    return model, build_optimizer(model, OptimConfig()), x, y


def _variant_steps(
    cfg: dict, variant: Variant, device: torch.device, steps: int, size: int
) -> list[float]:
    bench = ConvBenchConfig(**cfg)
    model, optimizer, x, y = _setup(bench, variant, device, size)
    with onednn(variant.onednn):
        return list(timed_steps(model, optimizer, x, y, steps))


def step_time(cfg: ConvBenchConfig, variant: Variant, device: torch.device, size: int) -> float:
    """Median seconds per training step at `size` px after `cfg.warmup` untimed steps."""
    times = _variant_steps(asdict(cfg), variant, device, cfg.warmup + cfg.steps, size)
    return statistics.median(times[cfg.warmup :])


def peak_memory(cfg: ConvBenchConfig, variant: Variant, device: torch.device, size: int) -> float:
    """Median over `cfg.memory_repeats` fresh processes of the training peak memory (MiB)."""
    run = partial(_variant_steps, asdict(cfg), variant, steps=cfg.memory_steps, size=size)
    return fresh_peak_memory(run, device, cfg.memory_repeats)


@dataclass(frozen=True)
class LayerTiming:
    name: str
    shape: str  # "C->O kxk/s HxW"
    native_ms: tuple[float, float]  # (forward, backward)
    unfold_ms: tuple[float, float]


def conv_inputs(cfg: ConvBenchConfig, size: int) -> list[tuple[str, nn.Conv2d, torch.Size]]:
    """Every conv of the model with the input shape it sees at the benchmark's batch and size."""
    model = build_model(ModelConfig(model=cfg.model), cfg.num_classes)
    found: list[tuple[str, nn.Conv2d, torch.Size]] = []
    hooks = [
        m.register_forward_pre_hook(
            lambda m, args, name=name: found.append((name, m, args[0].shape))
        )
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.rand(cfg.batch_size, 3, size, size))
    for hook in hooks:
        hook.remove()
    return found


def _fwd_bwd(conv: nn.Module, x: torch.Tensor, device: torch.device, repeats: int):
    fwd, bwd = [], []
    for _ in range(repeats + 1):  # the first round warms up
        with runtime.Timer(device) as t_fwd:
            out = conv(x)
        grad = torch.ones_like(out)
        with runtime.Timer(device) as t_bwd:
            out.backward(grad)
        fwd.append(t_fwd.seconds * 1e3)
        bwd.append(t_bwd.seconds * 1e3)
    return statistics.median(fwd[1:]), statistics.median(bwd[1:])


def layer_times(cfg: ConvBenchConfig, device: torch.device, size: int) -> Iterator[LayerTiming]:
    """Forward and backward ms of each conv layer, nn.Conv2d vs UnfoldConv2d, same weights."""
    for i, (name, conv, shape) in enumerate(conv_inputs(cfg, size)):
        conv = conv.to(device)
        unfold = convert_conv(conv, CONV_LAYERS["unfold"]).to(device)
        x = torch.randn(shape, device=device, requires_grad=i > 0)  # the image needs no grad
        k, s = conv.kernel_size, conv.stride
        yield LayerTiming(
            name=name,
            shape=f"{conv.in_channels}->{conv.out_channels} {k[0]}x{k[1]}/{s[0]} "
            f"{shape[2]}x{shape[3]}",
            native_ms=_fwd_bwd(conv, x, device, cfg.layer_repeats),
            unfold_ms=_fwd_bwd(unfold, x, device, cfg.layer_repeats),
        )


def step_table(results: dict[str, tuple[float, float]], batch_size: int) -> str:
    """Training-step table from {label: (ms per step, peak MiB)}, with ratios to the first row
    (the default nn.Conv2d) and, for UnfoldConv2d, to nn.Conv2d with oneDNN off and to the
    course's layer."""
    base_ms, base_mb = results[VARIANTS[0].label]
    rows = [
        [
            label,
            f"{ms:.1f}",
            f"{batch_size / ms * 1e3:.1f}",
            f"{mb:.0f}",
            ratio(ms, base_ms),
            ratio(mb, base_mb),
        ]
        for label, (ms, mb) in results.items()
    ]
    table = format_table(["variant", "ms/step", "img/s", "peak MiB", "time", "memory"], rows)
    lines = [table, "", "time and memory relative to nn.Conv2d (default settings)"]
    for ours, ref in RATIOS:
        if ours in results and ref in results:
            (ms, mb), (ref_ms, ref_mb) = results[ours], results[ref]
            lines.append(f"{ours} / {ref}: time {ratio(ms, ref_ms)}, memory {ratio(mb, ref_mb)}")
    return "\n".join(lines)


def layer_table(timings: list[LayerTiming]) -> str:
    """Per-layer forward/backward milliseconds and the UnfoldConv2d / nn.Conv2d ratio."""
    rows = []
    for t in timings:
        (nf, nb), (uf, ub) = t.native_ms, t.unfold_ms
        times = [f"{ms:.2f}" for ms in (nf, nb, uf, ub)]
        rows.append([t.name, t.shape, *times, ratio(uf + ub, nf + nb)])
    header = ["layer", "shape", "native fwd", "bwd", "unfold fwd", "bwd", "unfold/native"]
    return format_table(header, rows)
