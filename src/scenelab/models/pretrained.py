"""torchvision classification models (ResNet-18 and others by name) with a new head.

`TorchvisionClassifier` builds `torchvision.models.get_model(name, weights=None)`, replaces its
last Linear (ResNet's `fc`, the `classifier[-1]` of others) by the identity and adds `head`, a
new Linear for our classes. ImageNet weights come later, and only for a fresh training run:
`imagenet_state_dict` downloads them with torchvision's weights API (cached by torch hub) and
`read_state_dict` reads a local torchvision state-dict file; `load_backbone` loads either.
"""

import urllib.error
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from .layers import Normalize

# These return auxiliary outputs in training mode, which the one training loop does not take.
UNSUPPORTED = {"googlenet", "inception_v3"}


class WeightsError(ValueError):
    """Pretrained weights cannot be downloaded or read, or do not fit the model."""


def torchvision_names() -> list[str]:
    names = torchvision.models.list_models(module=torchvision.models)
    return sorted(set(names) - UNSUPPORTED)


class TorchvisionClassifier(nn.Module):
    """Input (B, 3, H, W) in [0, 1], normalised with the ImageNet statistics -> logits.

    freeze_backbone: train the head only; the backbone's parameters get no gradient and its
    BatchNorms become FrozenBatchNorm2d, so their running statistics stay those of the weights.
    """

    def __init__(self, name: str, num_classes: int = 100, *, freeze_backbone: bool = False) -> None:
        super().__init__()
        if name not in torchvision_names():
            raise ValueError(
                f"torchvision has no classification model {name!r} that scenelab can train; "
                f"choose from {', '.join(torchvision_names())}"
            )
        self.name = name
        self.normalize = Normalize()  # ImageNet statistics, as torchvision's weights expect
        self.backbone = torchvision.models.get_model(name, weights=None)
        self.head_name, last = _last_linear(self.backbone)
        self.backbone.set_submodule(self.head_name, nn.Identity())
        self.head = nn.Linear(last.in_features, num_classes)
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            _freeze_batchnorm(self.backbone)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(self.normalize(x)))

    def load_backbone(self, state_dict: dict[str, Tensor], source: str) -> None:
        """Load a torchvision state dict of this architecture, except its old classifier."""
        old_head = (f"{self.head_name}.weight", f"{self.head_name}.bias")
        state = {k: v for k, v in state_dict.items() if k not in old_head}
        fix = f"pass the state dict of a torchvision {self.name}"
        try:
            missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shapes that differ
            detail = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
            raise WeightsError(f"{source} does not fit {self.name}: {detail}; {fix}") from None
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise WeightsError(
                f"{source} does not fit torchvision's {self.name}: "
                f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:3]}); {fix}"
            )


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    return next(
        (n, m) for n, m in reversed(list(model.named_modules())) if isinstance(m, nn.Linear)
    )


def _freeze_batchnorm(model: nn.Module) -> None:
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.BatchNorm2d):
            model.set_submodule(name, FrozenBatchNorm2d(m.num_features, eps=m.eps))


def imagenet_state_dict(name: str, *, progress: bool = False) -> dict[str, Tensor]:
    """torchvision's default ImageNet weights of `name`, downloaded once into torch hub's cache."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    return download_state_dict(weights.url, progress=progress)


def download_state_dict(url: str, *, progress: bool = False) -> dict[str, Tensor]:
    """A state dict from `url` through torch hub's cache. A new download is checked against the
    hash in its file name (`name-<sha256 prefix>.pth`, torchvision's convention) when it has one."""
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return torch.hub.load_state_dict_from_url(
            url, progress=progress, check_hash=True, map_location="cpu", weights_only=True
        )
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise WeightsError(
            f"could not download pretrained weights from {url} ({reason}). Without internet: "
            f"download that file on another machine and pass it with --weights PATH, or copy it "
            f"into {cache}/"
        ) from None
    except RuntimeError as e:  # a hash mismatch or an unreadable download
        raise WeightsError(f"the weights downloaded from {url} are not usable: {e}") from None


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A torchvision state dict saved with torch.save, loaded weights-only."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors, truncated files, ...
        raise WeightsError(f"{path} is not a readable torch state dict: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(
            f"{path} is not a plain state dict of tensors (a scenelab checkpoint? pass a "
            "torchvision state dict, as torch.save(model.state_dict(), path) writes)"
        )
    return state
