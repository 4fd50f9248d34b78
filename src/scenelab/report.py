"""Result files and plots (matplotlib, Agg backend): evaluation tables, confusion matrices and
saliency grids."""

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .metrics import per_class_accuracy
from .tracking import RunDir


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


def image_grid(columns: dict[str, torch.Tensor], titles: list[list[str]]):
    """A matplotlib figure: one row per image, one column per entry of `columns` (its key is
    the header), each cell titled by `titles[row][col]`.

    A column holds images (N, 3, H, W) in [0, 1], or maps (N, H, W) drawn with a colour map.
    The caller saves and closes the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, k = len(titles), len(columns)
    fig, axes = plt.subplots(n, k, figsize=(2.2 * k, 2.3 * n + 0.3), squeeze=False)
    for col, (header, panels) in enumerate(columns.items()):
        for row in range(n):
            panel = panels[row].detach().cpu()
            ax = axes[row, col]
            if panel.ndim == 3:
                ax.imshow(panel.permute(1, 2, 0).numpy())
            else:
                ax.imshow(panel.numpy(), cmap="inferno")
            ax.set_axis_off()
            title = titles[row][col]
            ax.set_title(f"{header}\n{title}" if row == 0 else title, fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def explain_grid(
    images: torch.Tensor, maps: torch.Tensor, overlays: torch.Tensor, titles: list[str]
):
    """One row per image (image, map, overlay), titled with `titles` (true/predicted class)."""
    columns = {"image": images, "map": maps, "overlay": overlays}
    return image_grid(columns, [[t, "", ""] for t in titles])


def plot_robustness(
    rows: list[dict[str, Any]], path: Path, *, units: str = "pixels", title: str = ""
) -> None:
    """Top-1 under attack against epsilon, a line per model; with several models, a second
    panel: the clean/robust trade-off (clean top-1 against top-1 at the largest epsilon).

    rows: model (a run folder name), eps, clean_acc1, adv_acc1.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale, label = (255, "epsilon (grey levels, x/255)") if units == "pixels" else (
        1, "epsilon (normalised units)")  # fmt: skip
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, 2 if len(models) > 1 else 1, figsize=(10 if len(models) > 1
                             else 5, 3.8), squeeze=False)  # fmt: skip
    ax = axes[0, 0]
    accs = [r["adv_acc1"] for r in rows] + [r["clean_acc1"] for r in rows]
    for name in models:
        mine = [r for r in rows if r["model"] == name]
        ax.plot([r["eps"] * scale for r in mine], [r["adv_acc1"] for r in mine], "o-",
                label=RunDir.short_name(name))  # fmt: skip
    ax.set(xlabel=label, ylabel="top-1 under attack (%)")
    ax.set_ylim(max(0, min(accs) - 5), min(100, max(accs) + 5))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if len(models) > 1:
        ax = axes[0, 1]
        top = max(r["eps"] for r in rows)
        for name in models:
            (r,) = [r for r in rows if r["model"] == name and r["eps"] == top]
            ax.scatter(r["clean_acc1"], r["adv_acc1"])
            ax.annotate(RunDir.short_name(name), (r["clean_acc1"], r["adv_acc1"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
        eps_text = f"{top * 255:g}/255" if units == "pixels" else f"{top:g}"
        ax.set(xlabel="clean top-1 (%)", ylabel=f"top-1 at epsilon {eps_text} (%)")
        ax.set_title("clean / robust trade-off", fontsize=9)
        ax.grid(alpha=0.3)
        ax.margins(0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure_pixels(fig) -> torch.Tensor:
    """A drawn figure as a (3, H, W) float tensor in [0, 1] (for TensorBoard)."""
    fig.canvas.draw()
    rgba = torch.from_numpy(np.asarray(fig.canvas.buffer_rgba()).copy())  # (H, W, 4) uint8
    return rgba[..., :3].permute(2, 0, 1).float() / 255
