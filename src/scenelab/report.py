"""Result files and the run report.

`write_evaluation` writes an evaluation's tables; `write_report` (re)builds a run folder's
report.html and report.md from what the folder holds: the resolved config, the metrics of every
epoch, the final model's per-class results, and the explain/ and attack/ results when present.
Sections appear only for what the run has; each is built in `report_sections`.
"""

import csv
import json
from pathlib import Path
from typing import Any

import torch
import yaml

from . import report_sections as sections
from .document import Block, Code, Details, Heading, to_html, to_markdown
from .metrics import per_class_accuracy
from .plots import plot_confusion
from .tracking import RunDir, read_rows


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
    plot_confusion(confusion, classes, out / "confusion.png", _confusion_title(summary))
    return out


def _confusion_title(summary: dict[str, Any]) -> str:
    """From the settings: model, which weights, the split and its images, TTA, top-1."""
    parts = [str(summary.get("model", "model"))]
    if "epoch" in summary:
        parts.append(f"after epoch {summary['epoch']}")
    elif "checkpoint" in summary:
        parts.append(Path(summary["checkpoint"]).name)
    tta = " with flip TTA" if summary.get("tta") else ""
    parts.append(f"{summary.get('split', 'val')}: {summary['images']:,} images{tta}")
    return ", ".join(parts) + f", top-1 {summary['acc1']:.2f}%"


class ReportError(ValueError):
    """A folder that is not a run folder."""


def write_report(root: str | Path) -> tuple[Path, Path]:
    """(Re)build report.html and report.md in the run folder `root` (plots go to plots/)."""
    run = RunDir(Path(root))
    if not run.config.is_file():
        raise ReportError(
            f"{run.root} is not a run folder (no config.yaml); pass "
            "runs/<time>-<name>, the folder `scenelab train` printed"
        )
    title = f"Run {run.root.name}"
    blocks = build_report(run)
    run.report_md.write_text(to_markdown(title, blocks))
    run.report_html.write_text(to_html(title, blocks))
    return run.report_html, run.report_md


def build_report(run: RunDir) -> list[Block]:
    """The report's blocks: each section appears when the run has what it shows."""
    cfg = yaml.safe_load(run.config.read_text()) or {}
    summary = json.loads(run.summary.read_text()) if run.summary.is_file() else {}
    rows = read_rows(run.metrics_jsonl)
    return [
        *sections.overview(cfg, summary, rows),
        *sections.curves(run, rows),
        *sections.per_class(run),
        *sections.evaluations(run),
        *sections.explanations(run),
        *sections.attacks(run),
        Heading("Configuration"),
        Details(
            "config.yaml (resolved: every setting the run used)",
            [Code(run.config.read_text(), "yaml")],
        ),
    ]
