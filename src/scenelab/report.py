"""Result files and plots (matplotlib, Agg backend): evaluation tables and confusion matrices."""

import csv
import json
from pathlib import Path
from typing import Any

import torch

from .metrics import per_class_accuracy


def new_folder(parent: Path, name: str) -> Path:
    """`parent/name`, or `parent/name-1`, `-2`, ... so an earlier result is never overwritten."""
    folder, n = parent / name, 1
    while folder.exists():
        folder, n = parent / f"{name}-{n}", n + 1
    folder.mkdir(parents=True)
    return folder


def write_evaluation(
    parent: Path, name: str, metrics: dict[str, Any], classes: list[str], meta: dict[str, Any]
) -> Path:
    """metrics.json, per_class.csv, confusion.csv and confusion.png in a new folder."""
    out = new_folder(parent, name)
    confusion: torch.Tensor = metrics["confusion"]
    per_class = per_class_accuracy(confusion)
    summary = {k: v for k, v in metrics.items() if k != "confusion"}
    summary |= {"images": int(confusion.sum()), **meta}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out / "per_class.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "images", "acc1"])
        for name_, n, acc in zip(
            classes, confusion.sum(1).tolist(), per_class.tolist(), strict=True
        ):
            writer.writerow([name_, n, f"{acc:.2f}"])
    with open(out / "confusion.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *classes])
        for name_, row in zip(classes, confusion.tolist(), strict=True):
            writer.writerow([name_, *row])
    plot_confusion(confusion, classes, out / "confusion.png")
    return out


def plot_confusion(confusion: torch.Tensor, classes: list[str], path: Path) -> None:
    """Row-normalised confusion matrix as a heat map (class names shown up to 30 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = confusion.double() / confusion.sum(1, keepdim=True).clamp_min(1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(min(4 + 0.3 * k, 16), min(3.5 + 0.3 * k, 15)))
    image = ax.imshow(rates.numpy(), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    if k <= 30:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
