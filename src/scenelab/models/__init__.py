"""The model registry: `--model NAME` -> its spec (builder, description, optimiser, weights).

Each model's recipe lives in one `ModelSpec`. A builder takes the class count and the keyword
arguments it names among `conv_layer`, `img_size`, `freeze_backbone` and the architecture fields
of ModelConfig; `build_model` passes exactly those, so a setting that does not apply to a model
is an error, never silently ignored. `tv:NAME` builds the spec of any torchvision
classification model by name (e.g. `tv:resnet50`); `package.module:Name` a user's nn.Module
class or factory, and `register_model` adds one under a name of its own, as timm's does.
"""

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import ModelConfig
from ..course_conv import CourseConv2d
from ..modes import eval_mode
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
from .resnet_cpu import ResNetCPU
from .simplenet import SimpleNet
from .vit import Attention, VisionTransformer


@dataclass(frozen=True)
class Pretrained:
    """Weights a model can start from: torchvision's ImageNet ones, or a --weights file."""

    imagenet: str  # the torchvision model whose ImageNet weights these are
    optim: Mapping[str, Any]  # on top of the model's optimiser settings when starting from them


@dataclass(frozen=True)
class ModelSpec:
    """One model's recipe: how to build it, what it is, how it trains, which weights it has."""

    build: Callable[..., nn.Module]
    description: str
    optim: Mapping[str, Any] = field(default_factory=dict)  # between OptimConfig's and the user's
    pretrained: Pretrained | None = None  # None: random initialisation only

    def params(self) -> set[str]:
        """The keyword arguments the builder takes."""
        return set(inspect.signature(self.build).parameters)


_VIT_RECIPE = {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.05, "clip_grad": 1.0}
_FINE_TUNE = {"lr": 0.01, "weight_decay": 1e-4, "backbone_lr_scale": 1.0}
# The new head learns from scratch; a pretrained backbone only needs adjusting.
_FROM_PRETRAINED = {"backbone_lr_scale": 0.1}


def _torchvision_spec(name: str, description: str = "") -> ModelSpec:
    """The spec of torchvision's classification model `name` with a new head (`tv:NAME`)."""
    return ModelSpec(
        build=partial(TorchvisionClassifier, name),
        description=description or f"torchvision {name} with a new head",
        optim=_FINE_TUNE,
        pretrained=Pretrained(imagenet=name, optim=_FROM_PRETRAINED),
    )


MODELS: dict[str, ModelSpec] = {
    "simplenet": ModelSpec(SimpleNet, "the course's template CNN: 7 convs, no BatchNorm"),
    "vit": ModelSpec(
        VisionTransformer,
        "ViTDet-style ViT: patch 16, windowed blocks 1 and 3, mean pool + LayerNorm head",
        optim=_VIT_RECIPE,
    ),
    "resnet_bn": ModelSpec(
        BottleneckResNet, "bottleneck ResNet with BatchNorm (the course report's own design)"
    ),
    "msvit": ModelSpec(
        MultiScaleViT,
        "multi-scale ViT: branches with patch sizes 4, 8 and 16, one head",
        optim=_VIT_RECIPE,
    ),
    "resnet_cpu": ModelSpec(
        ResNetCPU,
        "residual CNN with BatchNorm for 64 px on a CPU: a 3x3/2 stem conv, stages at 16-8-4 px",
    ),
    "resnet18": _torchvision_spec(
        "resnet18", "torchvision ResNet-18 with a new head; --pretrained for ImageNet weights"
    ),
}


def convert_conv(conv: nn.Conv2d, cls: type[nn.Conv2d]) -> nn.Conv2d:
    """The same convolution as a `cls` (one of CONV_LAYERS' values), with the same weights."""
    new = cls(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    new.load_state_dict(conv.state_dict())
    return new


TORCHVISION_PREFIX = "tv:"
_BUILT_IN = frozenset(MODELS)  # the rest come from register_model

CONV_LAYERS: dict[str, type[nn.Conv2d]] = {
    "native": nn.Conv2d,
    "unfold": UnfoldConv2d,  # the hand-written unfold/matmul/fold convolution (ops.py)
    "course": CourseConv2d,  # the course assignment's layer, cols saved (course_conv.py)
}

ARCH_FIELDS = tuple(f.name for f in fields(ModelConfig) if f.metadata.get("arch"))

__all__ = [
    "CONV_LAYERS",
    "MODELS",
    "Attention",
    "BottleneckResNet",
    "ModelSpec",
    "MultiScaleViT",
    "Normalize",
    "Pretrained",
    "ResNetCPU",
    "SimpleNet",
    "TorchvisionClassifier",
    "VisionTransformer",
    "WeightsError",
    "build_model",
    "convert_conv",
    "count_flops",
    "model_source",
    "register_model",
    "count_parameters",
    "load_pretrained",
    "model_spec",
    "optim_defaults",
    "pretrained_state",
    "resolve_model_config",
]


def _doc_line(build: Callable) -> str:
    return (inspect.getdoc(build) or "").split("\n")[0]


def register_model(
    build: Callable[..., nn.Module] | None = None,
    *,
    name: str | None = None,
    description: str = "",
    optim: Mapping[str, Any] | None = None,
):
    """Add a model to the registry, as timm's `@register_model`: `--model NAME` then builds it.

        @register_model
        def tinynet(num_classes: int) -> nn.Module: ...

    `build` (a class or factory) takes `num_classes`, and `img_size` or `conv_layer` if it names
    them. The name is `name` or the builder's own; the description its docstring's first line;
    `optim` its own optimiser defaults (as the ViTs' AdamW). Checkpoints record where the builder
    lives (`model_source`), so `load_run` finds it again in a new process.
    """

    def add(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or build.__name__
        if key in MODELS and MODELS[key].build is not build:
            raise ValueError(f"a model named {key!r} is already registered; pick another name")
        _check_builder(key, build)
        MODELS[key] = ModelSpec(build, description or _doc_line(build), dict(optim or {}))
        return build

    return add(build) if build is not None else add


def _check_builder(name: str, build: object) -> None:
    if not callable(build):
        raise ValueError(f"model {name}: {build!r} is not a class or function")
    if "num_classes" not in inspect.signature(build).parameters:
        raise ValueError(
            f"model {name}: {getattr(build, '__qualname__', build)} must take a num_classes "
            "argument (the size of its output)"
        )


def _imported_spec(name: str) -> ModelSpec:
    """The spec of `package.module:Name`, a user's nn.Module class or factory."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"--model {name}: cannot import {module_name} ({e}); run from the folder that holds "
            "it, add that folder to PYTHONPATH, or install its package"
        ) from None
    build: Any = module
    for part in attr.split("."):
        build = getattr(build, part, None)
    if build is None:
        raise ValueError(f"--model {name}: {module_name} has no {attr!r}")
    _check_builder(name, build)
    return ModelSpec(build, _doc_line(build) or f"{attr} from {module_name}")


def model_source(name: str) -> str | None:
    """`module:qualname` of a registered model's builder, for checkpoints (None: built in)."""
    if name in _BUILT_IN or name not in MODELS:
        return None
    build = MODELS[name].build
    module, qualname = getattr(build, "__module__", None), getattr(build, "__qualname__", None)
    return f"{module}:{qualname}" if module and qualname else None


def ensure_registered(name: str, source: str | None) -> None:
    """Import the module of `source` when `name` is not registered yet (a checkpoint of a model
    registered in another process); its `@register_model` registers it."""
    if source and name not in MODELS and ":" not in name:
        try:
            importlib.import_module(source.partition(":")[0])
        except ImportError as e:
            raise ValueError(
                f"model {name} was registered by {source}, which cannot be imported here ({e})"
            ) from None


def model_spec(name: str) -> ModelSpec:
    """The spec of `name`: a registry name, tv:NAME or package.module:Name (a ValueError when
    unknown)."""
    if name.startswith(TORCHVISION_PREFIX):
        return _torchvision_spec(name.removeprefix(TORCHVISION_PREFIX))
    if ":" in name:
        return _imported_spec(name)
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}; choose from {', '.join(MODELS)}, tv:NAME for a "
            "torchvision classification model (e.g. tv:resnet50), or package.module:Name for "
            "your own nn.Module"
        )
    return MODELS[name]


def _given(cfg: ModelConfig) -> list[str]:
    """The settings (ModelConfig fields) that `cfg` makes beyond what every model takes."""
    given = [name for name in ARCH_FIELDS if getattr(cfg, name) is not None]
    if cfg.conv != "native":
        given.append("conv")
    if cfg.pretrained:
        given.append("pretrained")
    if cfg.weights is not None:
        given.append("weights")
    if cfg.freeze_backbone:
        given.append("freeze_backbone")
    return given


def _applies(setting: str, spec: ModelSpec) -> bool:
    """Whether ModelConfig's field `setting` means anything to the model of `spec`."""
    if setting in ("pretrained", "weights"):
        return spec.pretrained is not None
    builder_arg = "conv_layer" if setting == "conv" else setting
    return builder_arg in spec.params()


def _check_settings(cfg: ModelConfig) -> None:
    """Refuse settings that the model would ignore, naming the models they apply to."""
    spec = model_spec(cfg.model)
    for setting in _given(cfg):
        if not _applies(setting, spec):
            users = ", ".join(name for name, other in MODELS.items() if _applies(setting, other))
            flag = "--" + setting.replace("_", "-")
            raise ValueError(f"{flag} does not apply to {cfg.model}; it applies to: {users}")


def resolve_model_config(cfg: ModelConfig) -> ModelConfig:
    """`cfg` with every architecture field the model takes set (its default where None).

    Settings that do not apply to the model are refused here, before any work starts.
    """
    _check_settings(cfg)
    params = inspect.signature(model_spec(cfg.model).build).parameters
    defaults = {
        name: params[name].default
        for name in ARCH_FIELDS
        if name in params and getattr(cfg, name) is None
    }
    return replace(cfg, **defaults)


def build_model(cfg: ModelConfig, num_classes: int, image_size: int = 128) -> nn.Module:
    """The model `cfg` names, randomly initialised (pretrained weights: `load_pretrained`)."""
    spec = model_spec(cfg.model)
    if cfg.conv not in CONV_LAYERS:
        raise ValueError(f"unknown conv {cfg.conv!r}; choose from {', '.join(CONV_LAYERS)}")
    _check_settings(cfg)
    accepts = spec.params()
    kwargs: dict[str, Any] = {
        name: value for name in ARCH_FIELDS if (value := getattr(cfg, name)) is not None
    }
    if "conv_layer" in accepts:
        kwargs["conv_layer"] = CONV_LAYERS[cfg.conv]
    if "img_size" in accepts:
        kwargs["img_size"] = image_size
    if "freeze_backbone" in accepts:
        kwargs["freeze_backbone"] = cfg.freeze_backbone
    return spec.build(num_classes=num_classes, **kwargs)


def pretrained_state(cfg: ModelConfig, *, progress: bool = False) -> tuple[dict, str]:
    """The state dict `cfg` asks for (its --weights file, else ImageNet's) and where it is from.

    Separate from `load_pretrained`, so that a missing download fails before any other work.
    """
    if cfg.weights is not None:
        return read_state_dict(cfg.weights), cfg.weights
    name = _weights_of(cfg).imagenet
    return imagenet_state_dict(name, progress=progress), f"torchvision's ImageNet weights of {name}"


def load_pretrained(
    model: nn.Module, cfg: ModelConfig, *, progress: bool = False, state: tuple | None = None
) -> str:
    """Load the weights `cfg` asks for (or `state`, from `pretrained_state`); returns whence."""
    _weights_of(cfg)
    weights, source = state or pretrained_state(cfg, progress=progress)
    model.load_backbone(weights, source)
    return source


def _weights_of(cfg: ModelConfig) -> Pretrained:
    """The pretrained weights of the model `cfg` names; a WeightsError where it has none."""
    pretrained = model_spec(cfg.model).pretrained
    if pretrained is None:
        with_weights = [name for name, spec in MODELS.items() if spec.pretrained is not None]
        raise WeightsError(
            f"{cfg.model} has no pretrained weights; use {', '.join(with_weights)} or tv:NAME"
        )
    return pretrained


def optim_defaults(cfg: ModelConfig) -> dict[str, Any]:
    """The model's own optimiser settings, between the dataclass defaults and user settings.

    Those of its spec, and from pretrained weights (--pretrained or --weights) its spec's
    settings for them on top: CNNs train with SGD (OptimConfig's defaults); the ViTs with the
    course recipe (AdamW, lr 0.01, weight decay 0.05, gradient clipping at 1.0); torchvision
    models fine-tune with SGD at lr 0.01 and, from pretrained weights, the backbone at a tenth.
    """
    spec = model_spec(cfg.model)
    defaults = dict(spec.optim)
    if spec.pretrained is not None and (cfg.pretrained or cfg.weights is not None):
        defaults |= spec.pretrained.optim
    return defaults


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, image_size: int) -> int:
    """Forward FLOPs (2 per multiply-add) for one image, with torch.utils.flop_counter.

    The model counts in eval mode, and every submodule gets its own mode back afterwards.
    Attention runs on the manual path while counting: the counter does not see inside the CPU
    kernel of F.scaled_dot_product_attention, and both paths do the same matrix products.
    """
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    device = next(model.parameters()).device
    with eval_mode(model):
        try:
            for m in attentions:
                m.fused = False
            with FlopCounterMode(display=False) as counter:
                model(torch.rand(1, 3, image_size, image_size, device=device))
        finally:
            for m in attentions:
                m.fused = True
    return counter.get_total_flops()
