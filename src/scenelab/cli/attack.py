"""`scenelab attack`: adversarial examples against a checkpoint, robust accuracy, pictures."""

import argparse
import csv
import json
import math
import sys
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


def _models(
    args, data_overrides: dict[str, Any], device
) -> tuple[list[tuple[str, nn.Module]], list[str], DataConfig]:
    """(name, model) of the checkpoint and of each --compare-checkpoint, the classes, and the
    data config (the first checkpoint's, with the data flags given)."""
    state = load_checkpoint(args.checkpoint)
    model, cfg = trained_model(state, args.checkpoint, data_overrides)
    models = [(_run_name(args.checkpoint), model.to(device))]
    for path in args.compare_checkpoint or []:
        other = load_checkpoint(path)
        if other["classes"] != state["classes"]:
            raise ValueError(f"{path} was trained on other classes than {args.checkpoint}")
        name = _run_name(path)
        if name in dict(models):  # best.pt and last.pt of one run
            name = f"{name}/{Path(path).stem}"
        models.append((name, trained_model(other, path)[0].to(device)))
    return models, state["classes"], cfg.data


def _run_name(path: str) -> str:
    """The run folder's name of a checkpoint (runs/<name>/checkpoints/best.pt)."""
    return Path(path).resolve().parent.parent.name


def _attack(cfg, model, loader, eps, device, keep=0) -> AttackResult:
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
        "mean Linf x255",
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


def _grid(results: list[tuple[str, AttackResult]], classes: list[str]):
    """Clean image, then each model's adversarial image and amplified perturbation."""
    first = results[0][1].examples
    deltas = [r.examples["x_adv"] - r.examples["x"] for _, r in results]
    gain = 0.5 / max(max(float(d.abs().max()) for d in deltas), 1e-12)
    columns: dict[str, Tensor] = {"clean": first["x"]}
    pairs = zip(first["y"].tolist(), first["clean_pred"].tolist(), strict=True)
    titles = [[f"true {classes[y]}\npredicted {classes[p]}"] for y, p in pairs]
    for (name, r), delta in zip(results, deltas, strict=True):
        suffix = f"\n{RunDir.short_name(name)}" if len(results) > 1 else ""
        # Shown clamped: with --no-clamp the images may leave [0, 1].
        columns[f"adversarial{suffix}"] = r.examples["x_adv"].clamp(0, 1)
        columns[f"perturbation x{gain:.0f}{suffix}"] = (0.5 + gain * delta).clamp(0, 1)
        for i, row in enumerate(titles):
            line = f"predicted {classes[r.examples['adv_pred'][i]]}"
            if "target" in r.examples:
                line += f"\ntarget {classes[r.examples['target'][i]]}"
            row += [line, ""]
    return image_grid(columns, titles)


def _write_sweep(out: Path, cfg: AttackConfig, rows: list[dict]) -> None:
    with open(out / "robustness.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_robustness(rows, out / "robustness.png", units=cfg.units, title=attack_label(cfg, True))


def cmd_attack(args: argparse.Namespace) -> int:
    cfg, data_overrides = attack_config(args)
    eps_values = cfg.sweep()
    device = runtime.pick_device(args.device)
    runtime.setup(device)
    models, classes, data_cfg = _models(args, data_overrides, device)
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
                    }
                )
                print(f"{name} eps {_fmt(eps, cfg.units, '/')}: adv top-1 {r.adv_acc1:.2f}%")
        out = new_folder(parent, attack_label(cfg, sweep=True))
        _write_sweep(out, cfg, rows)
        with Tracker(run) as tracker:
            plot = decode_image(str(out / "robustness.png"), mode=ImageReadMode.RGB)
            tracker.images(f"attack/{out.name}", plot.float() / 255, 0)
        print(f"\nResults: {out}  (robustness.csv, robustness.png; TensorBoard: attack/)")
        refresh_report(run)
        return 0
    results = [
        (name, _attack(cfg, model, loader, cfg.eps, device, keep=cfg.num)) for name, model in models
    ]
    print("\n" + _table(results))
    out = new_folder(parent, attack_label(cfg))
    plt = pyplot()
    fig = _grid(results, classes)
    fig.savefig(out / "grid.png", dpi=100)
    grid = figure_pixels(fig)
    plt.close(fig)
    metrics = {
        "settings": asdict(cfg),
        "checkpoint": str(args.checkpoint),
        "results": {name: r.metrics() for name, r in results},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with Tracker(run) as tracker:
        tracker.images(f"attack/{out.name}", grid, 0)
    print(f"\nResults: {out}  (metrics.json, grid.png; TensorBoard: attack/)")
    refresh_report(run)
    return 0
