"""`scenelab attack`: adversarial examples against a checkpoint, robust accuracy, pictures."""

import argparse
import csv
import json
import math
import sys
import textwrap
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.io import ImageReadMode, decode_image

from .. import runtime
from ..analysis_config import ATTACK_PRESETS, AttackConfig
from ..attack import (
    course_units,
    fgsm,
    least_likely_target,
    pgd,
    pick_target,
)
from ..attack_eval import AttackResult, Perturb, evaluate_attack
from ..checkpoint import load_checkpoint, trained_model
from ..config import DataConfig
from ..data import build_dataset, build_loader, check_classes
from ..document import format_table
from ..fields import coerce_fields
from ..labels import setting_labels
from ..plots import figure_pixels, image_grid, plot_robustness, pyplot
from ..report import new_folder
from ..tracking import Console, RunDir, Tracker
from .flags import given, load_yaml
from .results import refresh_report


def attack_config(args: argparse.Namespace) -> tuple[AttackConfig, dict[str, Any]]:
    """The preset's settings, then the --config recipe's, then the flags given; and the data
    settings of the recipe and the flags."""
    recipe = load_yaml(args.config) if args.config else {}
    attack_keys, data_keys = (set(f.name for f in fields(c)) for c in (AttackConfig, DataConfig))
    unknown = set(recipe) - attack_keys - data_keys
    if unknown:
        raise ValueError(f"{args.config}: unknown attack settings {', '.join(sorted(unknown))}")
    from_file = coerce_fields(AttackConfig, {k: v for k, v in recipe.items() if k in attack_keys})
    flags = given(args, AttackConfig)
    preset = flags.get("preset", from_file.get("preset", "none"))
    data = coerce_fields(DataConfig, {k: v for k, v in recipe.items() if k in data_keys})
    cfg = AttackConfig(**{**ATTACK_PRESETS[preset], **from_file, **flags})
    return cfg, {**data, **given(args, DataConfig)}


def make_perturb(cfg: AttackConfig, model: nn.Module, eps: float) -> Perturb:
    """`cfg`'s attack with radius `eps` (in cfg.units), in pixel units for `model`."""

    def pixels(value: float) -> float | Tensor:
        return course_units(value, model) if cfg.units == "normalized" else value

    if eps == 0:  # the clean images: a sweep's first point
        return lambda m, x, y, t: x
    e, alpha = pixels(eps), pixels(cfg.step_size(eps))
    if cfg.attack == "fgsm":
        return lambda m, x, y, t: fgsm(m, x, y, eps=e, norm=cfg.norm, target=t, clamp=cfg.clamp)

    def least_likely(logits: Tensor, y: Tensor) -> Tensor:
        return least_likely_target(logits, None if cfg.include_true else y)

    retarget = least_likely if cfg.retarget else None
    return lambda m, x, y, t: pgd(
        m,
        x,
        y,
        eps=e,
        alpha=alpha,
        steps=cfg.steps,
        norm=cfg.norm,
        target=t,
        retarget=retarget,
        random_start=cfg.random_start,
        restarts=cfg.restarts,
        clamp=cfg.clamp,
    )


def _fmt(value: float, units: str, sep: str = "-") -> str:
    """8/255 as `8-255` (or `8/255`) in pixel units when it is a whole number of grey levels,
    else `%g`."""
    grey = value * 255
    if units == "pixels" and value and abs(grey - round(grey)) < 1e-6:
        return f"{round(grey)}{sep}255"
    return f"{value:g}"


def _tokens(cfg: AttackConfig) -> list[str]:
    parts = [cfg.attack, cfg.norm]
    if cfg.attack == "pgd":
        parts += [] if cfg.random_start else ["no-rs"]
        parts += [f"r{cfg.restarts}"] if cfg.restarts > 1 else []
    if cfg.target != "none":
        parts += [cfg.target] + (["retarget"] if cfg.retarget else [])
        parts += ["any"] if cfg.include_true else []
    parts += [] if cfg.units == "pixels" else ["norm-units"]
    return parts + ([] if cfg.clamp else ["no-clamp"])


def attack_label(cfg: AttackConfig, sweep: bool = False) -> str:
    """A folder name recording the settings, e.g. `pgd-linf-least-likely-eps8-255-s10`; with a
    preset, its name and only the settings that differ from it (`course-eps0.3-a0.01-s10`)."""
    parts = _tokens(cfg)
    if cfg.preset != "none":
        preset = _tokens(AttackConfig(**ATTACK_PRESETS[cfg.preset]))
        parts = [cfg.preset] + [t for t in parts if t not in preset]
    if sweep:
        parts = ["sweep", *parts]
    else:
        parts.append(f"eps{_fmt(cfg.eps, cfg.units)}")
    if cfg.attack == "pgd":
        parts += [f"a{_fmt(cfg.alpha, cfg.units)}"] if cfg.alpha is not None else []
        parts.append(f"s{cfg.steps}")
    return "-".join(parts)


def _size(value: float, cfg: AttackConfig) -> str:
    """An L-inf radius or step in pixel units as grey levels (`8/255`, `3.33/255`), else `%.3g`."""
    if cfg.units == "pixels" and cfg.norm == "linf" and value:
        return f"{value * 255:.3g}/255"
    return f"{value:.3g}"


_TARGETS = {"none": "untargeted", "least-likely": "least-likely target", "random": "random target"}


def attack_title(cfg: AttackConfig, eps: float | None = None) -> str:
    """The attack in words for figure titles, e.g. `PGD-10 L-inf, eps 8/255, step 2/255,
    untargeted`; without `eps` (a sweep), the settings every point shares."""
    name = "FGSM" if cfg.attack == "fgsm" else f"PGD-{cfg.steps}"
    parts = [f"{name} {'L-inf' if cfg.norm == 'linf' else 'L2'}"]
    units = " (normalised units)" if cfg.units == "normalized" else ""
    if eps is not None:
        parts.append(f"eps {_size(eps, cfg)}{units}")
        if cfg.attack == "pgd":
            parts.append(f"step {_size(cfg.step_size(eps), cfg)}")
    elif units:
        parts.append(units.strip(" ()"))
    target = _TARGETS[cfg.target] + (" re-picked each step" if cfg.retarget else "")
    parts.append(target)
    if cfg.attack == "pgd" and cfg.restarts > 1:
        parts.append(f"{cfg.restarts} restarts")
    if cfg.attack == "pgd" and not cfg.random_start:
        parts.append("no random start")
    return ", ".join(parts + ([] if cfg.clamp else ["no clamp"]))


def _models(
    args, data_overrides: dict[str, Any], device
) -> tuple[list[tuple[str, nn.Module]], list[str], DataConfig, dict[str, str]]:
    """(name, model) of the checkpoint and of each --compare-checkpoint, the classes, the data
    config (the first checkpoint's, with the data flags given) and each model's label for
    figures (from the settings in which the runs differ)."""
    state = load_checkpoint(args.checkpoint)
    model, cfg = trained_model(state, args.checkpoint, data_overrides)
    models = [(_run_name(args.checkpoint), model.to(device))]
    configs = [state["config"]]
    for path in args.compare_checkpoint or []:
        other = load_checkpoint(path)
        if other["classes"] != state["classes"]:
            raise ValueError(f"{path} was trained on other classes than {args.checkpoint}")
        name = _run_name(path)
        if name in dict(models):  # best.pt and last.pt of one run
            name = f"{name}/{Path(path).stem}"
        models.append((name, trained_model(other, path)[0].to(device)))
        configs.append(other["config"])
    names = [RunDir.short_name(name) for name, _ in models]
    if len(set(names)) < len(names):  # two runs named alike: their folders tell them apart
        names = [name for name, _ in models]
    labels = dict(zip(dict(models), setting_labels(configs, names), strict=True))
    return models, state["classes"], cfg.data, labels


def _run_name(path: str) -> str:
    """The run folder's name of a checkpoint (runs/<name>/checkpoints/best.pt)."""
    return Path(path).resolve().parent.parent.name


def _attack(cfg, model, loader, eps, device, keep=0, select=None) -> AttackResult:
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    return evaluate_attack(
        model,
        loader,
        make_perturb(cfg, model, eps),
        device=device,
        targets=lambda logits, y: pick_target(
            cfg.target, logits, y, include_true=cfg.include_true, generator=generator
        ),
        keep=keep,
        select=select,
        console=Console(sys.stdout, log_every=max(1, len(loader) // 5)),
    )


def _table(results: list[tuple[str, AttackResult]]) -> str:
    header = [
        "model",
        "clean top-1",
        "top-5",
        "adv top-1",
        "top-5",
        "target hit %",
        "mean L-inf (x/255)",
        "mean L2",
        "seconds",
    ]
    rows = [
        [
            name,
            f"{r.clean_acc1:.2f}",
            f"{r.clean_acc5:.2f}",
            f"{r.adv_acc1:.2f}",
            f"{r.adv_acc5:.2f}",
            "-" if math.isnan(r.success) else f"{r.success:.1f}",
            f"{r.linf * 255:.2f}",
            f"{r.l2:.3f}",
            f"{r.seconds:.1f}",
        ]
        for name, r in results
    ]
    return format_table(header, rows)


FLIPPED, HELD = "tab:red", "tab:green"  # title colours of an adversarial prediction


def _grid(results: list[tuple[str, AttackResult]], classes: list[str], labels, title: str):
    """Clean image, then each model's adversarial image and amplified perturbation; each
    adversarial prediction says (and is coloured by) whether the attack flipped it."""
    first = results[0][1].examples
    deltas = [r.examples["x_adv"] - r.examples["x"] for _, r in results]
    gain = 0.5 / max(max(float(d.abs().max()) for d in deltas), 1e-12)
    columns: dict[str, Tensor] = {"clean": first["x"]}
    pairs = zip(first["y"].tolist(), first["clean_pred"].tolist(), strict=True)
    titles = [[f"true {classes[y]}\npredicted {classes[p]}"] for y, p in pairs]
    colors: list[list[str | None]] = [[None] for _ in titles]
    for (name, r), delta in zip(results, deltas, strict=True):
        suffix = f"\n{textwrap.fill(labels[name], 30)}" if len(results) > 1 else ""
        # Shown clamped: with --no-clamp the images may leave [0, 1].
        columns[f"adversarial{suffix}"] = r.examples["x_adv"].clamp(0, 1)
        columns[f"perturbation x{gain:.0f}{suffix}"] = (0.5 + gain * delta).clamp(0, 1)
        for i, (row, color) in enumerate(zip(titles, colors, strict=True)):
            adv, clean = int(r.examples["adv_pred"][i]), int(r.examples["clean_pred"][i])
            line = f"predicted {classes[adv]}\n{'flipped' if adv != clean else 'unchanged'}"
            if "target" in r.examples:
                line += f", target {classes[r.examples['target'][i]]}"
            row += [line, ""]
            color += [FLIPPED if adv != clean else HELD, None]
    return image_grid(columns, titles, colors=colors, title=title)


def _flipped(batch: dict[str, Tensor]) -> Tensor:
    """`--select flipped`: the images whose prediction the attack changed."""
    return batch["adv_pred"] != batch["clean_pred"]


def _results(cfg: AttackConfig, models, loader, device) -> list[tuple[str, AttackResult]]:
    """Each model attacked at cfg.eps, keeping cfg.num examples for the grid: the first ones,
    or (--select flipped) the first the attack flipped for the first model, and the same
    images for the others."""
    results, select = [], _flipped if cfg.select == "flipped" else None
    for name, model in models:
        results.append((name, _attack(cfg, model, loader, cfg.eps, device, cfg.num, select)))
        if select is _flipped:
            wanted = results[0][1].examples.get("index", torch.empty(0, dtype=torch.long))
            select = lambda batch, wanted=wanted: torch.isin(batch["index"], wanted)  # noqa: E731
    return results


def _write_sweep(out: Path, cfg: AttackConfig, rows: list[dict], labels, data: str) -> None:
    with open(out / "robustness.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    title = f"{attack_title(cfg)}, {data} val"
    plot_robustness(rows, out / "robustness.png", units=cfg.units, title=title, labels=labels)


def cmd_attack(args: argparse.Namespace) -> int:
    cfg, data_overrides = attack_config(args)
    eps_values = cfg.sweep()
    device = runtime.pick_device(args.device)
    runtime.setup(device)
    models, classes, data_cfg, labels = _models(args, data_overrides, device)
    dataset, data_classes = build_dataset(data_cfg, "val")
    check_classes(data_classes, classes, data_cfg.data)
    loader = build_loader(dataset, data_cfg, train=False, device=device)
    run = RunDir(Path(args.checkpoint).resolve().parent.parent)
    parent = Path(args.out) if args.out else run.root / "attack"
    print(f"Attacking {len(dataset)} validation images: {attack_label(cfg, bool(eps_values))}")
    if eps_values:
        rows = []
        for name, model in models:
            for eps in eps_values:
                r = _attack(cfg, model, loader, eps, device)
                rows.append(
                    {
                        "model": name,
                        "eps": eps,
                        "adv_acc1": r.adv_acc1,
                        "adv_acc5": r.adv_acc5,
                        "clean_acc1": r.clean_acc1,
                        "success": r.success,
                        "linf": r.linf,
                        "l2": r.l2,
                        "units": cfg.units,  # of eps; linf and l2 are in pixels
                    }
                )
                print(f"{name} eps {_fmt(eps, cfg.units, '/')}: adv top-1 {r.adv_acc1:.2f}%")
        out = new_folder(parent, attack_label(cfg, sweep=True))
        _write_sweep(out, cfg, rows, labels, data_cfg.data)
        with Tracker(run) as tracker:
            plot = decode_image(str(out / "robustness.png"), mode=ImageReadMode.RGB)
            tracker.images(f"attack/{out.name}", plot.float() / 255, 0)
        print(f"\nResults: {out}  (robustness.csv, robustness.png; TensorBoard: attack/)")
        refresh_report(run)
        return 0
    results = _results(cfg, models, loader, device)
    print("\n" + _table(results))
    out = new_folder(parent, attack_label(cfg))
    grid = None
    if results[0][1].examples:
        plt = pyplot()
        whose = f"{labels[models[0][0]]}, " if len(models) == 1 else ""  # else in the columns
        title = f"{attack_title(cfg, cfg.eps)}\n{whose}{data_cfg.data} val"
        fig = _grid(results, classes, labels, title)
        fig.savefig(out / "grid.png", dpi=100)
        grid = figure_pixels(fig)
        plt.close(fig)
    else:  # --select flipped, and the attack flipped nothing
        print(f"\nThe attack flipped no prediction of {models[0][0]}: no grid.png")
    metrics = {
        "settings": asdict(cfg),
        "checkpoint": str(args.checkpoint),
        "results": {name: r.metrics() for name, r in results},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if grid is not None:
        with Tracker(run) as tracker:
            tracker.images(f"attack/{out.name}", grid, 0)
    files = "metrics.json, grid.png; TensorBoard: attack/" if grid is not None else "metrics.json"
    print(f"\nResults: {out}  ({files})")
    refresh_report(run)
    return 0
