"""Top-k accuracy, confusion matrices, on-device running sums (no host sync per step), and
saliency-map scores against object masks (pointing game, mask energy, rank correlation)."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .runtime import all_reduce_


def correct_topk(logits: Tensor, target: Tensor, topk: tuple[int, ...] = (1, 5)) -> list[Tensor]:
    """Number of samples whose target is among the top-k logits, for each k (0-dim tensors).

    k larger than the class count counts every sample, as torchvision's references do.
    """
    maxk = min(max(topk), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices  # (B, maxk)
    hit = pred == target[:, None]  # (B, maxk)
    return [hit[:, : min(k, maxk)].any(dim=1).sum() for k in topk]


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(K, K) counts, rows = true class, columns = predicted class."""
    index = target * num_classes + pred
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """Recall of each class in percent (NaN for a class with no samples)."""
    total = confusion.sum(dim=1).double()
    return 100 * confusion.diagonal().double() / total


def pointing_game(maps: Tensor, masks: Tensor) -> Tensor:
    """1.0 where the map's maximum falls inside the object mask, else 0.0; NaN for an image
    without object pixels. maps (B, H, W), masks (B, H, W) bool -> (B,)."""
    hit = masks.flatten(1).gather(1, maps.flatten(1).argmax(1, keepdim=True)).squeeze(1)
    return torch.where(masks.flatten(1).any(1), hit.to(maps.dtype), torch.nan)


def mask_energy(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of each map's (non-negative) mass inside the mask, (B,); NaN without object pixels
    or for an all-zero map. Chance level is the mask's area fraction."""
    inside = (maps * masks).flatten(1).sum(1)
    total = maps.flatten(1).sum(1)
    valid = masks.flatten(1).any(1) & (total > 0)
    return torch.where(valid, inside / total.clamp_min(torch.finfo(maps.dtype).tiny), torch.nan)


def rank_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation between maps a and b of each image, (B, H, W) -> (B,).

    Ranks by sort order (ties broken by position, which matters only for flat regions).
    """
    ra = a.flatten(1).argsort(1).argsort(1).double()
    rb = b.flatten(1).argsort(1).argsort(1).double()
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)


class RunningSums:
    """Sums of per-batch quantities kept on the device; `.means()` syncs once."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, n: int, **values: Tensor) -> None:
        """values: sums over the batch (e.g. loss * n, correct counts)."""
        for key, value in values.items():
            value = value.detach().double()
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += n

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sums": {k: v.cpu() for k, v in self.sums.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> "RunningSums":
        sums = cls()
        sums.count = state["count"]
        sums.sums = {k: v.to(device) for k, v in state["sums"].items()}
        return sums

    def all_reduce(self, keys: Iterable[str], device: torch.device) -> "RunningSums":
        """Sum the counts and sums of all processes (DDP) in place; `keys` names every sum, so
        that a process which saw no batch takes part too. Alone, nothing changes."""
        keys = list(keys)
        zero = torch.zeros((), dtype=torch.float64, device=device)
        values = [torch.tensor(float(self.count), dtype=torch.float64, device=device)]
        values += [self.sums.get(k, zero).to(device) for k in keys]
        packed = all_reduce_(torch.stack(values))
        self.count = int(packed[0].item())
        self.sums = dict(zip(keys, packed[1:], strict=True))
        return self

    def means(self, scale: dict[str, float] | None = None) -> dict[str, float]:
        scale = scale or {}
        return {k: v.item() / max(self.count, 1) * scale.get(k, 1.0) for k, v in self.sums.items()}
