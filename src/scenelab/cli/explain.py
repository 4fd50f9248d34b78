"""`scenelab explain`: saliency maps and overlays for a checkpoint, or their quality scores."""

import argparse
import csv
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from .. import runtime
from ..analysis_config import ExplainConfig
from ..checkpoint import fresh_model, load_checkpoint, trained_model
from ..config import DataConfig, RunConfig
from ..data import DatasetError, build_dataset, build_loader, check_classes
from ..data.decode import decode_rgb
from ..data.transforms import eval_transform
from ..document import format_table
from ..explain import compute_maps, method_label, predict
from ..explain_score import SANITY_MAX_CORRELATION, score_methods
from ..inference import find_images, probabilities
from ..overlays import heat_overlay, red_overlay
from ..plots import explain_grid, figure_pixels, pyplot
from ..report import new_folder
from ..tracking import Console, RunDir, Tracker
from .flags import given
from .results import refresh_report

HEAT_CMAP = "jet"  # the heat overlay's colour map


def _files(args: list[str]) -> list[str]:
    """The image files that --images names (files, folders searched recursively, globs); an
    argument that matches nothing is an error naming it, before any work."""
    found, missing = find_images(args)
    if missing:
        raise ValueError("--images: " + "; ".join(missing))
    return [str(p) for p in found]


def _decoded(paths: list[str], size: int) -> torch.Tensor:
    transform = eval_transform(size)
    return torch.stack([transform(decode_rgb(p)) for p in paths])


def _select(model, dataset, cfg: RunConfig, ecfg: ExplainConfig, device):
    """The first `num` validation images that match `select`, with labels and predictions."""
    loader = build_loader(dataset, cfg.data, train=False, device=device)
    picked: list[tuple[torch.Tensor, torch.Tensor]] = []
    for x, y in loader:
        keep = torch.ones_like(y, dtype=torch.bool)
        if ecfg.select != "all":
            correct = predict(model, x.to(device)).cpu() == y
            keep = correct if ecfg.select == "correct" else ~correct
        picked += list(zip(x[keep], y[keep], strict=True))
        if len(picked) >= ecfg.num:
            break
    if not picked:
        raise DatasetError(f"no {ecfg.select} validation images to explain")
    images, labels = zip(*picked[: ecfg.num], strict=True)
    return torch.stack(images), torch.stack(labels)


def _photo_titles(paths: list[str], classes: list[str], probs: torch.Tensor) -> list[str]:
    """ "name: predicted p%" for each photo, with "(true C)" when the photo sits in a folder
    named after a class C, as an image-folder tree stores them."""
    best, preds = probs.max(1)
    titles = []
    for path, p, c in zip(paths, best.tolist(), preds.tolist(), strict=True):
        folder = Path(path).resolve().parent.name
        truth = f" (true {folder})" if folder in classes else ""
        titles.append(f"{Path(path).name}: {classes[c]} {100 * p:.1f}%{truth}")
    return titles


def cmd_explain(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    settings = given(args, ExplainConfig)
    if args.images:  # photos differ in contrast: threshold each map on its own mean
        args.images = _files(args.images)
        settings.setdefault("per_image", True)
    ecfg = ExplainConfig(**settings)
    device = runtime.pick_device(args.device)
    runtime.setup(device)
    model, cfg = trained_model(checkpoint, args.checkpoint, given(args, DataConfig))
    model = model.to(device)
    classes, run = checkpoint["classes"], RunDir(Path(args.checkpoint).resolve().parent.parent)
    parent = Path(args.out) if args.out else run.root / "explain"
    if args.score:
        _score(model, cfg, ecfg, checkpoint, parent, device)
        refresh_report(run)
        return 0
    if args.images:
        images, labels = _decoded(args.images, cfg.data.resolved_image_size), None
    else:
        dataset, data_classes = build_dataset(cfg.data, "val")
        check_classes(data_classes, classes, cfg.data.data)
        images, labels = _select(model, dataset, cfg, ecfg, device)
    images = images.to(device)
    probs = probabilities(model, images)  # (B, classes), in eval mode
    preds = probs.argmax(1)
    torch.manual_seed(ecfg.seed)
    maps = compute_maps(model, images, ecfg, preds)
    if ecfg.overlay == "heat":
        overlays = heat_overlay(images, maps, cmap=HEAT_CMAP)
    else:
        overlays = red_overlay(images, maps, alpha=ecfg.threshold, per_image=ecfg.per_image)
    if labels is not None:
        truths = [f"true {classes[i]}" for i in labels.tolist()]
        titles = [
            f"{t} / predicted {classes[p]}" for t, p in zip(truths, preds.tolist(), strict=True)
        ]
    else:
        titles = _photo_titles(args.images, classes, probs.cpu())
        print("\n".join(titles))
    out = new_folder(parent, method_label(ecfg))
    names = [classes[p] for p in preds]
    source = "your images" if args.images else f"{cfg.data.data} val"
    title = explain_title(ecfg, cfg.model.model, source)
    grid = _write_pictures(out, (images, maps, overlays), titles, names, ecfg, title)
    torch.save(
        {"maps": maps.cpu(), "predicted": preds.cpu(), "titles": titles, "config": asdict(ecfg)},
        out / "maps.pt",
    )
    print(f"{ecfg.method}: {len(images)} images, maps in [{maps.min():.3g}, {maps.max():.3g}]")
    print(
        f"\nResults: {out}  (grid.png, one {ecfg.format} per image, maps.pt; TensorBoard: explain/)"
    )
    with Tracker(run) as tracker:
        tracker.images(f"explain/{out.name}", grid, 0)
    refresh_report(run)
    return 0


_GRADIENT_METHODS = ("saliency", "smoothgrad", "integrated_gradients")


def explain_title(ecfg: ExplainConfig, model: str, images: str) -> str:
    """The method and its settings in words, for figure titles, e.g. `saliency of the loss,
    max over colour channels; red where the map exceeds 2x its mean` and the model's line."""
    method = {
        "saliency": "saliency",
        "smoothgrad": f"SmoothGrad ({ecfg.samples} samples, noise {ecfg.stdev:g})",
        "integrated_gradients": f"integrated gradients ({ecfg.steps} steps, baseline "
        f"{ecfg.baseline:g})",
        "grad_cam": f"Grad-CAM ({ecfg.layer or 'last feature map'})",
        "attention_rollout": "attention rollout",
    }[ecfg.method]
    if ecfg.method != "attention_rollout":
        method += f" of the {ecfg.objective}"
    if ecfg.method in _GRADIENT_METHODS:
        method += f", {ecfg.reduce} over colour channels"
    overlay = "heat overlay"
    if ecfg.overlay == "red":
        each = "its own" if ecfg.per_image else "the maps'"
        overlay = f"red where the map exceeds {ecfg.threshold:g}x {each} mean"
    return f"{method}; {overlay}\n{model}, {images}"


def _write_pictures(out: Path, panels, titles, names, ecfg: ExplainConfig, title: str):
    """grid.png (and grid.<format>) and one figure per image in --format (named by index and
    predicted class), titled `title`; returns the grid's pixels (3, H, W) for TensorBoard."""
    plt = pyplot()
    cmap = HEAT_CMAP if ecfg.overlay == "heat" else None
    fig = explain_grid(*panels, titles, heat_cmap=cmap, title=title)
    for fmt in dict.fromkeys(("png", ecfg.format)):
        fig.savefig(out / f"grid.{fmt}", dpi=100)
    grid = figure_pixels(fig)
    plt.close(fig)
    for i, name in enumerate(names):
        one = slice(i, i + 1)
        fig = explain_grid(*(p[one] for p in panels), titles[one], heat_cmap=cmap, title=title)
        fig.savefig(out / f"{i:02d}-{name}.{ecfg.format}", dpi=100)
        plt.close(fig)
    return grid


def _score(model, cfg: RunConfig, ecfg: ExplainConfig, checkpoint, parent: Path, device) -> None:
    dataset, data_classes = build_dataset(cfg.data, "val", with_masks=True)
    check_classes(data_classes, checkpoint["classes"], cfg.data.data)
    loader = build_loader(dataset, cfg.data, train=False, device=device)
    torch.manual_seed(ecfg.seed)
    randomised = fresh_model(checkpoint).to(device).eval()
    print(
        f"Scoring saliency methods on {len(dataset)} validation images with masks ...", flush=True
    )
    console = Console(sys.stdout, log_every=max(1, len(loader) // 4))
    scores = score_methods(model, randomised, loader, ecfg, device=device, console=console)
    rows = [
        [
            s.method,
            f"{s.pointing_game:.1f}",
            f"{s.mask_energy:.1f}",
            f"{s.chance_energy:.1f}",
            f"{s.randomised_rank_corr:.2f}",
            "pass" if s.passes_sanity else "FAIL",
            f"{s.seconds:.1f}",
        ]
        for s in scores
    ]
    header = ["method", "pointing %", "energy %", "chance %", "rank corr", "sanity", "seconds"]
    print("\n" + format_table(header, rows))
    out = new_folder(parent, "score")
    with open(out / "score.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*asdict(scores[0]), "passes_sanity"])
        writer.writeheader()
        writer.writerows(asdict(s) | {"passes_sanity": s.passes_sanity} for s in scores)
    print(
        f"\npointing: the map's maximum inside the object mask; energy: the map's mass inside "
        f"it (chance: the masks' area); rank corr: trained vs re-initialised model's maps "
        f"(sanity passes below {SANITY_MAX_CORRELATION})\n\nResults: {out / 'score.csv'}"
    )
