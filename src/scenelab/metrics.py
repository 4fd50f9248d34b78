"""Top-k accuracy, confusion matrices and on-device running sums (no host sync per step)."""

import torch
from torch import Tensor


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

    def means(self, scale: dict[str, float] | None = None) -> dict[str, float]:
        scale = scale or {}
        return {k: v.item() / max(self.count, 1) * scale.get(k, 1.0) for k, v in self.sums.items()}
