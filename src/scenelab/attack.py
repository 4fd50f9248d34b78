"""Adversarial examples in pixel space: FGSM and PGD in L-infinity and L2 balls.

Images are pixels in [0, 1] (every scenelab model normalises its own input), and `eps` and the
step `alpha` are in pixel units: 8/255 is eight grey levels. `course_units` converts the
course's settings, which are in normalised units, exactly. The loop follows torchattacks
(signed or normalised gradient step, projection onto the ball, clamp to [0, 1]) with
robustness's threat-model objects; gradients come from `torch.autograd.grad` on the input, so
parameter `.grad` is untouched, and the model runs in eval mode and gets its modes back.
"""

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .metrics import RunningSums, correct_topk
from .models.layers import Normalize
from .modes import eval_mode
from .tracking import Console

Norm = Literal["linf", "l2"]
# (logits of the current images, true labels) -> target classes
TargetFn = Callable[[Tensor, Tensor], Tensor]
# (model, images, true labels, targets or None) -> adversarial images
Perturb = Callable[[nn.Module, Tensor, Tensor, Tensor | None], Tensor]
# (logits, labels) -> the loss, summed over the batch
LossFn = Callable[[Tensor, Tensor], Tensor]


def check_pixels(x: Tensor) -> None:
    """Refuse images outside [0, 1]: they are usually already normalised."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(x.shape)}")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 1:
        raise ValueError(
            f"images must be pixels in [0, 1] (got values in [{lo:.3g}, {hi:.3g}]); pass images "
            "before normalisation: every scenelab model normalises its input itself"
        )


def least_likely_target(logits: Tensor, y: Tensor | None = None) -> Tensor:
    """The class with the lowest logit (B,), the true class `y` excluded when given."""
    if y is not None:
        logits = logits.scatter(1, y[:, None], float("inf"))
    return logits.argmin(1)


def random_target(y: Tensor, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random class other than `y` for each image (B,)."""
    offset = torch.randint(1, num_classes, y.shape, generator=generator, device="cpu")
    return (y + offset.to(y.device)) % num_classes


def pick_target(
    mode: str,
    logits: Tensor,
    y: Tensor,
    *,
    include_true: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor | None:
    """Targets for `mode` none (None: untargeted), least-likely or random, from clean logits;
    `include_true` lets the target be the true class (the course's argmin knows no labels)."""
    if mode == "none":
        return None
    if mode == "least-likely":
        return least_likely_target(logits, None if include_true else y)
    if mode == "random":
        if include_true:
            return torch.randint(logits.shape[1], y.shape, generator=generator).to(y.device)
        return random_target(y, logits.shape[1], generator)
    raise ValueError(f"target must be none, least-likely or random, got {mode!r}")


def input_std(model: nn.Module) -> Tensor:
    """The per-channel std (C, 1, 1) of the model's input normalisation (ones without one)."""
    norm = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    if norm is None:
        p = next(model.parameters())
        return torch.ones(3, 1, 1, dtype=p.dtype, device=p.device)
    return norm.std


def course_units(value: float, model: nn.Module) -> Tensor:
    """A step or epsilon given in normalised units (the course's), in pixel units per channel:
    value x std, since a normalised image is (x - mean) / std."""
    return value * input_std(model).detach()


class LinfBall:
    """The L-infinity ball: |delta| <= eps per pixel; eps a number or per channel (C, 1, 1)."""

    def __init__(self, eps: float | Tensor) -> None:
        self.eps = eps

    def random_start(self, x: Tensor) -> Tensor:
        return x + (torch.rand_like(x) * 2 - 1) * self.eps

    def step(self, grad: Tensor, alpha: float | Tensor) -> Tensor:
        return alpha * grad.sign()

    def project(self, delta: Tensor) -> Tensor:
        if isinstance(self.eps, Tensor):
            return torch.maximum(torch.minimum(delta, self.eps), -self.eps)
        return delta.clamp(-self.eps, self.eps)


class L2Ball:
    """The L2 ball: ||delta||_2 <= eps per image."""

    def __init__(self, eps: float) -> None:
        if isinstance(eps, Tensor):
            raise ValueError("an L2 ball takes one epsilon, not one per channel")
        self.eps = eps

    def random_start(self, x: Tensor) -> Tensor:
        """A uniform radius in a uniform direction, as torchattacks' PGDL2."""
        delta = torch.randn_like(x)
        radius = torch.rand(len(x), 1, 1, 1, dtype=x.dtype, device=x.device) * self.eps
        return x + delta / _norms(delta) * radius

    def step(self, grad: Tensor, alpha: float | Tensor) -> Tensor:
        return alpha * grad / (_norms(grad) + 1e-10)

    def project(self, delta: Tensor) -> Tensor:
        return delta * (self.eps / _norms(delta)).clamp(max=1.0)


def _norms(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def threat_model(norm: Norm, eps: float | Tensor) -> LinfBall | L2Ball:
    if norm == "linf":
        return LinfBall(eps)
    if norm == "l2":
        return L2Ball(eps)
    raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")


def _pgd_once(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    ball: LinfBall | L2Ball,
    alpha: float | Tensor,
    steps: int,
    target: Tensor | None,
    retarget: TargetFn | None,
    random_start: bool,
    clamp: bool,
    loss_fn: LossFn,
) -> Tensor:
    """One PGD run from one (random or clean) start: the adversarial images, detached."""
    targeted = target is not None or retarget is not None
    sign = -1.0 if targeted else 1.0  # targeted: descend the target's loss; else ascend y's
    x_adv = ball.random_start(x) if random_start else x.clone()
    if clamp:
        x_adv = x_adv.clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        if retarget is not None:
            target = retarget(logits.detach(), y)
        # Summed, so each image's gradient is that of its own loss, whatever the batch.
        loss = loss_fn(logits, target if targeted else y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + sign * ball.step(grad, alpha)
        x_adv = x + ball.project(x_adv - x)
        if clamp:
            x_adv = x_adv.clamp(0, 1)
    return x_adv.detach()


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels, reduction="sum")


def _strength(model, x_adv: Tensor, y: Tensor, target, retarget) -> Tensor:
    """Per image: how far the attack got (the true class's loss, or minus the target's)."""
    with torch.no_grad():
        logits = model(x_adv)
    if retarget is not None:
        target = retarget(logits, y)
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float | Tensor = 8 / 255,
    alpha: float | Tensor = 2 / 255,
    steps: int = 10,
    norm: Norm = "linf",
    target: Tensor | None = None,
    retarget: TargetFn | None = None,
    random_start: bool = True,
    restarts: int = 1,
    clamp: bool = True,
    eval_model: bool = True,
    loss_fn: LossFn = _cross_entropy,
) -> Tensor:
    """Projected gradient descent (Madry et al. 2018): adversarial images like `x`.

    Untargeted (raise the loss of the true labels `y`) unless `target` is given (lower the
    loss of those classes), or `retarget`, which picks the target from each step's logits.
    `eps` and `alpha` are in pixel units (a number, or per channel (C, 1, 1) for linf).
    `restarts` > 1 repeats the attack from new random starts and keeps, per image, the
    strongest result. `clamp=False` keeps only the ball's projection (the course's attack,
    which works in normalised space where [0, 1] has no meaning). `eval_model=False` runs the
    model in its current mode (adversarial training with BatchNorm on batch statistics).
    `loss_fn(logits, labels)`, summed over the batch, replaces the cross-entropy (TRADES
    ascends a divergence instead).
    """
    check_pixels(x)
    attack_once = partial(
        _pgd_once,
        model,
        x,
        y,
        ball=threat_model(norm, eps),
        alpha=alpha,
        steps=steps,
        target=target,
        retarget=retarget,
        random_start=random_start,
        clamp=clamp,
        loss_fn=loss_fn,
    )
    with eval_mode(model) if eval_model else nullcontext(), torch.enable_grad():
        best = attack_once()
        if restarts > 1:
            strength = _strength(model, best, y, target, retarget)
            for _ in range(restarts - 1):
                x_adv = attack_once()
                s = _strength(model, x_adv, y, target, retarget)
                better = s > strength
                best = torch.where(better[:, None, None, None], x_adv, best)
                strength = torch.where(better, s, strength)
    return best


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float | Tensor = 8 / 255,
    norm: Norm = "linf",
    target: Tensor | None = None,
    clamp: bool = True,
) -> Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size `eps` (for L2, the
    fast gradient method: one step along the normalised gradient)."""
    return pgd(
        model,
        x,
        y,
        eps=eps,
        alpha=eps,
        steps=1,
        norm=norm,
        target=target,
        random_start=False,
        clamp=clamp,
    )


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
    # The first `keep` images: x, x_adv, y, clean_pred, adv_pred and target (when targeted).
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
    console: Console | None = None,
) -> AttackResult:
    """Clean and adversarial top-1/top-5 over the (image, label) batches of `loader`.

    `targets(clean_logits, y)` picks each batch's targets (None: untargeted); `perturb` makes
    the adversarial images. The model is evaluated in eval mode.
    """
    sums, kept = RunningSums(), []
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
            if target is not None:
                batch["target"] = target
            kept.append({k: v.detach().cpu() for k, v in batch.items()})
        progress.step(lambda: {"adv_acc1": 100 * sums.means()["adv_acc1"]})
    progress.close()
    keys = ["clean_acc1", "clean_acc5", "adv_acc1", "adv_acc5", "linf", "l2"]
    sums.all_reduce(keys + ["success"] * ("success" in sums.sums), device)  # DDP: all shares
    percents = ("clean_acc1", "clean_acc5", "adv_acc1", "adv_acc5", "success")
    means = sums.means(dict.fromkeys(percents, 100.0))
    examples = {k: torch.cat([b[k] for b in kept])[:keep] for k in kept[0]} if kept else {}
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
