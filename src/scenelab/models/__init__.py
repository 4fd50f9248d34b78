"""The model registry: `--model NAME` -> a builder taking the class count and a conv layer."""

from collections.abc import Callable

from torch import nn

from ..config import ModelConfig
from ..ops import UnfoldConv2d
from .layers import Normalize
from .simplenet import SimpleNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "simplenet": SimpleNet,
}

CONV_LAYERS: dict[str, type[nn.Conv2d]] = {
    "native": nn.Conv2d,
    "unfold": UnfoldConv2d,  # the hand-written unfold/matmul/fold convolution (ops.py)
}

__all__ = ["CONV_LAYERS", "MODELS", "Normalize", "SimpleNet", "build_model", "count_parameters"]


def build_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    if cfg.model not in MODELS:
        raise ValueError(f"unknown model {cfg.model!r}; choose from {', '.join(MODELS)}")
    if cfg.conv not in CONV_LAYERS:
        raise ValueError(f"unknown conv {cfg.conv!r}; choose from {', '.join(CONV_LAYERS)}")
    return MODELS[cfg.model](num_classes=num_classes, conv_layer=CONV_LAYERS[cfg.conv])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
