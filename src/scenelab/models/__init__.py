"""The model registry: `--model NAME` -> a builder, its default optimiser, pretrained weights.

A builder takes the class count and the keyword arguments it names among `conv_layer`,
`img_size`, `freeze_backbone` and the architecture fields of ModelConfig; `build_model` passes
exactly those, so a setting that does not apply to a model is an error, never silently ignored.
`tv:NAME` builds any torchvision classification model by name (e.g. `tv:resnet50`).
"""

import inspect
from collections.abc import Callable
from dataclasses import fields, replace
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import ModelConfig
from ..ops import UnfoldConv2d
from .layers import Normalize
from .multiscale_vit import MultiScaleViT
from .pretrained import (
    TorchvisionClassifier,
    WeightsError,
    imagenet_state_dict,
    read_state_dict,
)
from .resnet import BottleneckResNet
from .simplenet import SimpleNet
from .vit import Attention, VisionTransformer

MODELS: dict[str, Callable[..., nn.Module]] = {
    "simplenet": SimpleNet,
    "vit": VisionTransformer,
    "resnet_bn": BottleneckResNet,
    "msvit": MultiScaleViT,
    "resnet18": partial(TorchvisionClassifier, "resnet18"),
}

DESCRIPTIONS = {
    "simplenet": "the course's template CNN: 7 convs, no BatchNorm",
    "vit": "ViTDet-style ViT: patch 16, windowed blocks 1 and 3, mean pool + LayerNorm head",
    "resnet_bn": "bottleneck ResNet with BatchNorm (the course report's own design)",
    "msvit": "multi-scale ViT: branches with patch sizes 4, 8 and 16, one head",
    "resnet18": "torchvision ResNet-18 with a new head; --pretrained for ImageNet weights",
}

TORCHVISION_PREFIX = "tv:"

CONV_LAYERS: dict[str, type[nn.Conv2d]] = {
    "native": nn.Conv2d,
    "unfold": UnfoldConv2d,  # the hand-written unfold/matmul/fold convolution (ops.py)
}

_VIT_RECIPE = {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.05, "clip_grad": 1.0}
ARCH_FIELDS = tuple(f.name for f in fields(ModelConfig) if f.metadata.get("arch"))

__all__ = [
    "CONV_LAYERS",
    "MODELS",
    "Attention",
    "BottleneckResNet",
    "MultiScaleViT",
    "Normalize",
    "SimpleNet",
    "TorchvisionClassifier",
    "VisionTransformer",
    "WeightsError",
    "build_model",
    "count_flops",
    "count_parameters",
    "load_pretrained",
    "optim_defaults",
    "pretrained_state",
    "resolve_model_config",
]


def _builder(name: str) -> Callable[..., nn.Module]:
    if name.startswith(TORCHVISION_PREFIX):
        return partial(TorchvisionClassifier, name.removeprefix(TORCHVISION_PREFIX))
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}; choose from {', '.join(MODELS)} or tv:NAME for a "
            "torchvision classification model (e.g. tv:resnet50)"
        )
    return MODELS[name]


def _accepts(name: str) -> set[str]:
    return set(inspect.signature(_builder(name)).parameters)


def _check_settings(cfg: ModelConfig) -> None:
    """Refuse settings that the model would ignore, naming the models they apply to."""
    wanted = {name: name for name in ARCH_FIELDS if getattr(cfg, name) is not None}
    if cfg.conv != "native":
        wanted["conv"] = "conv_layer"
    # Only torchvision models take freeze_backbone, and only they have pretrained weights.
    torchvision_only = {
        "pretrained": cfg.pretrained,
        "weights": cfg.weights is not None,
        "freeze_backbone": cfg.freeze_backbone,
    }
    for flag, on in torchvision_only.items():
        if on:
            wanted[flag] = "freeze_backbone"
    accepts = _accepts(cfg.model)
    for flag, param in wanted.items():
        if param not in accepts:
            users = ", ".join(n for n in MODELS if param in _accepts(n))
            raise ValueError(
                f"--{flag.replace('_', '-')} does not apply to {cfg.model}; it applies to: {users}"
            )


def resolve_model_config(cfg: ModelConfig) -> ModelConfig:
    """`cfg` with every architecture field the model takes set (its default where None).

    Settings that do not apply to the model are refused here, before any work starts.
    """
    _check_settings(cfg)
    params = inspect.signature(_builder(cfg.model)).parameters
    defaults = {
        name: params[name].default
        for name in ARCH_FIELDS
        if name in params and getattr(cfg, name) is None
    }
    return replace(cfg, **defaults)


def build_model(cfg: ModelConfig, num_classes: int, image_size: int = 128) -> nn.Module:
    """The model `cfg` names, randomly initialised (pretrained weights: `load_pretrained`)."""
    builder, accepts = _builder(cfg.model), _accepts(cfg.model)
    if cfg.conv not in CONV_LAYERS:
        raise ValueError(f"unknown conv {cfg.conv!r}; choose from {', '.join(CONV_LAYERS)}")
    _check_settings(cfg)
    kwargs: dict[str, Any] = {
        name: value for name in ARCH_FIELDS if (value := getattr(cfg, name)) is not None
    }
    if "conv_layer" in accepts:
        kwargs["conv_layer"] = CONV_LAYERS[cfg.conv]
    if "img_size" in accepts:
        kwargs["img_size"] = image_size
    if "freeze_backbone" in accepts:
        kwargs["freeze_backbone"] = cfg.freeze_backbone
    return builder(num_classes=num_classes, **kwargs)


def pretrained_state(cfg: ModelConfig, *, progress: bool = False) -> tuple[dict, str]:
    """The state dict `cfg` asks for (its --weights file, else ImageNet's) and where it is from.

    Separate from `load_pretrained`, so that a missing download fails before any other work.
    """
    if cfg.weights is not None:
        return read_state_dict(cfg.weights), cfg.weights
    name = cfg.model.removeprefix(TORCHVISION_PREFIX)
    return imagenet_state_dict(name, progress=progress), f"torchvision's ImageNet weights of {name}"


def load_pretrained(
    model: nn.Module, cfg: ModelConfig, *, progress: bool = False, state: tuple | None = None
) -> str:
    """Load the weights `cfg` asks for (or `state`, from `pretrained_state`); returns whence."""
    if not isinstance(model, TorchvisionClassifier):
        raise WeightsError(f"{cfg.model} has no pretrained weights; use resnet18 or tv:NAME")
    weights, source = state or pretrained_state(cfg, progress=progress)
    model.load_backbone(weights, source)
    return source


def optim_defaults(cfg: ModelConfig) -> dict[str, Any]:
    """The model's own optimiser settings, between the dataclass defaults and user settings.

    CNNs train with SGD (OptimConfig's defaults); the ViTs with the course recipe (AdamW, lr
    0.01, weight decay 0.05, gradient clipping at 1.0); torchvision models fine-tune with SGD at
    lr 0.01 and, from pretrained weights, the backbone at a tenth of that.
    """
    if cfg.model in ("vit", "msvit"):
        return dict(_VIT_RECIPE)
    if cfg.model == "resnet18" or cfg.model.startswith(TORCHVISION_PREFIX):
        pretrained = cfg.pretrained or cfg.weights is not None
        return {"lr": 0.01, "weight_decay": 1e-4, "backbone_lr_scale": 0.1 if pretrained else 1.0}
    return {}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, image_size: int) -> int:
    """Forward FLOPs (2 per multiply-add) for one image, with torch.utils.flop_counter.

    Attention runs on the manual path while counting: the counter does not see inside the CPU
    kernel of F.scaled_dot_product_attention, and both paths do the same matrix products.
    """
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    try:
        for m in attentions:
            m.fused = False
        with FlopCounterMode(display=False) as counter:
            model(torch.rand(1, 3, image_size, image_size, device=device))
    finally:
        for m in attentions:
            m.fused = True
        model.train(was_training)
    return counter.get_total_flops()
