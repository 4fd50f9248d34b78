"""Attacks evaluated over a loader: clean and adversarial top-1/top-5, target hits and
perturbation sizes (`evaluate_attack`, which returns an `AttackResult`).
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .metrics import RunningSums, correct_topk
from .modes import eval_mode
from .tracking import Console

# (model, images, true labels, targets or None) -> adversarial images
Perturb = Callable[[nn.Module, Tensor, Tensor, Tensor | None], Tensor]


@dataclass
class AttackResult:
    """Accuracies and success rate in percent; perturbation sizes are means in pixel units."""

    images: int
    clean_acc1: float
    clean_acc5: float
    adv_acc1: float
    adv_acc5: float
    success: float  # adversarial prediction == target (NaN when untargeted)
    linf: float
    l2: float
    seconds: float
    # The first `keep` images (of those `select` picks): x, x_adv, y, clean_pred, adv_pred,
    # index (the position in the loader's order) and target (when targeted).
    examples: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if k != "examples"}


def evaluate_attack(
    model: nn.Module,
    loader,
    perturb: Perturb,
    *,
    device: torch.device,
    targets: Callable[[Tensor, Tensor], Tensor | None] | None = None,
    keep: int = 0,
    select: Callable[[dict[str, Tensor]], Tensor] | None = None,
    console: Console | None = None,
) -> AttackResult:
    """Clean and adversarial top-1/top-5 over the (image, label) batches of `loader`.

    `targets(clean_logits, y)` picks each batch's targets (None: untargeted); `perturb` makes
    the adversarial images. The model is evaluated in eval mode. The result keeps `keep`
    examples: the first ones, or the first for which `select(batch)` is True (a boolean mask
    over a batch's examples, given the keys of `AttackResult.examples`).
    """
    sums, kept, seen = RunningSums(), [], 0
    progress = (console or Console()).progress(len(loader), "attack")
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with eval_mode(model), torch.no_grad():
            clean = model(x)
        target = targets(clean, y) if targets is not None else None
        x_adv = perturb(model, x, y, target)
        with eval_mode(model), torch.no_grad():
            adv = model(x_adv)
        delta = (x_adv - x).flatten(1)
        stats = dict(zip(("clean_acc1", "clean_acc5"), correct_topk(clean, y), strict=True))
        stats |= dict(zip(("adv_acc1", "adv_acc5"), correct_topk(adv, y), strict=True))
        if target is not None:
            stats["success"] = (adv.argmax(1) == target).sum()
        sums.add(len(y), **stats, linf=delta.abs().amax(1).sum(), l2=delta.norm(dim=1).sum())
        if sum(len(k["y"]) for k in kept) < keep:
            batch = dict(x=x, x_adv=x_adv, y=y, clean_pred=clean.argmax(1), adv_pred=adv.argmax(1))
            batch["index"] = torch.arange(seen, seen + len(y), device=y.device)
            if target is not None:
                batch["target"] = target
            mask = select(batch) if select is not None else None
            kept.append(
                {k: (v if mask is None else v[mask]).detach().cpu() for k, v in batch.items()}
            )
        seen += len(y)
        progress.step(lambda: {"adv_acc1": 100 * sums.means()["adv_acc1"]})
    progress.close()
    keys = ["clean_acc1", "clean_acc5", "adv_acc1", "adv_acc5", "linf", "l2"]
    sums.all_reduce(keys + ["success"] * ("success" in sums.sums), device)  # DDP: all shares
    percents = ("clean_acc1", "clean_acc5", "adv_acc1", "adv_acc5", "success")
    means = sums.means(dict.fromkeys(percents, 100.0))
    examples = {k: torch.cat([b[k] for b in kept])[:keep] for k in kept[0]} if kept else {}
    if examples and not len(examples["y"]):  # `select` picked none
        examples = {}
    return AttackResult(
        images=sums.count,
        clean_acc1=means["clean_acc1"],
        clean_acc5=means["clean_acc5"],
        adv_acc1=means["adv_acc1"],
        adv_acc5=means["adv_acc5"],
        success=means.get("success", math.nan),
        linf=means["linf"],
        l2=means["l2"],
        seconds=time.perf_counter() - start,
        examples=examples,
    )
