"""What `scenelab train` says and leaves behind: the line announcing a run, and once it has
trained, summary.json, the final model's per-class evaluation, the closing lines and the report
(on the main process)."""

import json
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import Dataset

from .. import runtime
from ..budget import TimeBudget
from ..checkpoint import FitState
from ..config import RunConfig
from ..data import Loaders
from ..data.decode import read_bad_images
from ..models import count_parameters
from ..report import write_evaluation
from ..tracking import RunDir
from .results import refresh_report


@dataclass(frozen=True)
class Prepared:
    """A run ready to train: its folder, configuration, data and model (not yet on DDP)."""

    run: RunDir
    cfg: RunConfig
    train_set: Dataset
    val_set: Dataset
    classes: list[str]
    model: nn.Module
    loaders: Loaders


def run_line(
    job: Prepared, state: FitState, dist: runtime.Distributed, device: torch.device
) -> str:
    """What is about to train, on what, for how long."""
    cfg = job.cfg
    params = count_parameters(job.model)
    processes = ""
    if dist.world > 1:
        per_process = cfg.data.batch_size // dist.world
        processes = (
            f" x {dist.world} processes (global batch {cfg.data.batch_size}, "
            f"{per_process} per process)"
        )
    part_way = f" (epoch {state.epoch + 1} from batch {state.position + 1})"
    epochs = f"epochs {state.epoch + 1}-{state.epochs}"
    if cfg.train.time_budget and not state.budget:
        epochs = f"epochs planned as it goes to fit --time-budget {cfg.train.time_budget}"
    robust = job.loaders.robust
    return (
        f"Run folder {job.run.root}\n{cfg.model.model} ({params:,} parameters, conv "
        f"{cfg.model.conv}) on {device}{processes}: {len(job.train_set)} train / "
        f"{len(job.val_set)} val images, {len(job.classes)} classes, {epochs}"
        f"{part_way if state.position else ''}, "
        f"{cfg.optim.optimizer} lr {cfg.optim.lr:g}"
        + _adversarial_line(cfg, len(robust.dataset) if robust else 0)
    )


def finish(
    job: Prepared,
    state: FitState,
    device: torch.device,
    dist: runtime.Distributed,
    budget: TimeBudget | None = None,
) -> None:
    """On the main process: summary.json, the final model's per-class evaluation, the closing
    lines and the report."""
    run, cfg = job.run, job.cfg
    summary = _summary(cfg, state, count_parameters(job.model), device) | {"processes": dist.world}
    if budget is not None:  # config.yaml records the epochs the budget ended with
        cfg = replace(cfg, train=replace(cfg.train, epochs=state.epoch))
        run.config.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        summary |= {
            "time_budget_seconds": budget.seconds,
            "seconds_at_summary": budget.elapsed(),
            "final_lr": state.totals["final_lr"],
        }
    epoch_val = job.loaders.val_subset or job.loaders.val
    summary["val_images_per_epoch"] = len(epoch_val.dataset)  # all but the last epoch
    summary["final_val_images"] = state.totals.get("final_val_images", len(job.val_set))
    bad = read_bad_images(run.bad_images)
    if cfg.data.on_bad_image == "skip":
        summary["bad_images"] = {"count": len(bad), "files": bad}
    run.summary.write_text(json.dumps(summary, indent=2) + "\n")
    if bad:
        print(
            f"warning: skipped {len(bad)} unreadable images (listed in {run.bad_images})",
            file=sys.stderr,
        )
    if state.confusion is not None:  # per-class accuracy and confusions of the final model
        _write_final_evaluation(run, cfg, state, job.classes)
    print(
        f"\nbest val top-1 {summary['best_val_acc1']:.2f}%  final top-1 "
        f"{summary['final_val_acc1']:.2f}% top-5 {summary['final_val_acc5']:.2f}%  "
        f"train {summary['train_seconds']:.0f} s (run {summary['wall_seconds']:.0f} s)  "
        f"{summary['images_per_second']:.0f} img/s  "
        f"peak {summary['peak_memory_mb']:.0f} MB"
    )
    if budget is not None:
        print(
            f"time budget {cfg.train.time_budget}: training stopped at step {state.step}, "
            f"{summary['seconds_at_summary']:.0f} s of {budget.seconds:.0f} s spent before the "
            "report; "
            f"final lr {summary['final_lr']:.3g}"
        )
    print_where(run)
    refresh_report(run)


def print_where(run: RunDir) -> None:
    print(f"\nResults: {run.root}")
    print(f"  metrics: {run.metrics_csv}   checkpoints: {run.checkpoints}")
    print(f"  TensorBoard: tensorboard --logdir {run.tb.parent.parent}")


def _write_final_evaluation(
    run: RunDir, cfg: RunConfig, state: FitState, classes: list[str]
) -> None:
    """eval/final-val/: the last epoch's validation, replacing an earlier run's (on resume)."""
    shutil.rmtree(run.final_eval, ignore_errors=True)
    t = state.totals
    metrics = {
        "acc1": t["final_val_acc1"],
        "acc5": t["final_val_acc5"],
        "loss": t["final_val_loss"],
        "confusion": state.confusion,
    }
    meta = {"checkpoint": str(run.last), "epoch": state.epoch, "tta": cfg.train.tta}
    meta |= {"model": cfg.model.model, "split": "val"}
    write_evaluation(run.eval, run.final_eval.name, metrics, classes, meta)


def _adversarial_line(cfg: RunConfig, robust_images: int) -> str:
    adv, line = cfg.adv, ""
    if adv.course_units:  # the course's normalised units, as `attack --units normalized`
        eps, step = f"{adv.adv_eps:.3g}", f"{adv.step_size(adv.adv_eps):.3g}"
        units = " (normalised units, no clamp, to the least-likely class)"
    else:
        eps, step = (f"{v * 255:.3g}/255" for v in (adv.adv_eps, adv.step_size(adv.adv_eps)))
        units = ""
    if adv.adv_train != "none":
        line += (
            f"\nadversarial training: {adv.adv_train}, eps {eps}, PGD-{adv.steps} step {step}"
            f"{units}"
        )
    if robust_images:
        steps = adv.adv_eval_steps
        attack = (
            f"the course attack ({steps} steps of {step})" if adv.course_units else f"PGD-{steps}"
        )
        line += (
            f"\nrobust accuracy every epoch: {attack} at eps {eps}, first "
            f"{robust_images} val images"
        )
    return line


def _summary(cfg: RunConfig, state: FitState, params: int, device) -> dict[str, Any]:
    t = state.totals
    robust = {}
    if "final_val_robust_acc1" in t:
        robust = {
            "final_robust_acc1": t["final_val_robust_acc1"],
            "final_robust_drop": t["final_val_robust_drop"],
        }
    if cfg.adv.adv_train != "none" or robust:
        robust["adversarial"] = asdict(cfg.adv)
    return {
        "model": cfg.model.model,
        "conv": cfg.model.conv,
        "data": cfg.data.data,
        "image_size": cfg.data.resolved_image_size,
        "epochs": state.epoch,
        "epochs_planned": state.epochs,
        "params": params,
        "device": str(device),
        "best_val_acc1": state.best_acc1,
        "final_val_acc1": t["final_val_acc1"],
        "final_val_acc5": t["final_val_acc5"],
        "final_train_acc1": t["final_train_acc1"],
        "final_train_acc5": t["final_train_acc5"],
        "min_val_loss": t["min_val_loss"],
        "min_train_loss": t["min_train_loss"],
        "train_seconds": t["train_seconds"],
        "wall_seconds": t["wall_seconds"],
        "seconds_per_epoch": t["train_seconds"] / max(state.epoch, 1),
        "images_per_second": t["train_images"] / max(t["train_seconds"], 1e-9),
        "peak_memory_mb": t["peak_memory_mb"],
    } | robust
