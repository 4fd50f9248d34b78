"""Result files and plots (matplotlib, Agg backend): evaluation tables, confusion matrices and
saliency grids."""

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
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


def explain_grid(
    images: torch.Tensor, maps: torch.Tensor, overlays: torch.Tensor, titles: list[str]
):
    """A matplotlib figure: one row per image (image, map, overlay), each titled.

    images and overlays (N, 3, H, W) in [0, 1]; maps (N, H, W). The caller saves and closes it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.3 * n + 0.2), squeeze=False)
    for row, (image, m, overlay, title) in enumerate(
        zip(images, maps, overlays, titles, strict=True)
    ):
        panels = [image.permute(1, 2, 0), m, overlay.permute(1, 2, 0)]
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel.detach().cpu().numpy(), cmap="inferno" if col == 1 else None)
            ax.set_axis_off()
        axes[row, 0].set_title(title, fontsize=8, loc="left")
    for col, name in enumerate(("image", "map", "overlay")):
        axes[0, col].set_title(axes[0, col].get_title() if col == 0 else name, fontsize=8)
    fig.tight_layout()
    return fig


def figure_pixels(fig) -> torch.Tensor:
    """A drawn figure as a (3, H, W) float tensor in [0, 1] (for TensorBoard)."""
    fig.canvas.draw()
    rgba = torch.from_numpy(np.asarray(fig.canvas.buffer_rgba()).copy())  # (H, W, 4) uint8
    return rgba[..., :3].permute(2, 0, 1).float() / 255
