"""Adversarial examples in pixel space: FGSM and PGD in L-infinity and L2 balls.

Images are pixels in [0, 1] (every scenelab model normalises its own input), and `eps` and the
step `alpha` are in pixel units: 8/255 is eight grey levels. `course_units` converts the
course's settings, which are in normalised units, exactly. The loop follows torchattacks
(signed or normalised gradient step, projection onto the ball, clamp to [0, 1]) with
robustness's threat-model objects; gradients come from `torch.autograd.grad` on the input, so
parameter `.grad` is untouched, and the model runs in eval mode and gets its modes back.
The balls are in `threat_models`; evaluating an attack over a loader is in `attack_eval`.
"""

from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models.layers import Normalize
from .modes import eval_mode
from .threat_models import L2Ball, LinfBall, Norm, threat_model

# (logits of the current images, true labels) -> target classes
TargetFn = Callable[[Tensor, Tensor], Tensor]
# (logits, labels) -> the loss, summed over the batch
LossFn = Callable[[Tensor, Tensor], Tensor]


def check_pixels(x: Tensor) -> None:
    """Refuse images outside [0, 1]: they are usually already normalised."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(x.shape)}")
    if not len(x):
        raise ValueError("an empty batch (0 images): give at least one image")
    if not torch.isfinite(x).all():
        raise ValueError("the images hold NaN or infinite values; check how they were made")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 1:
        raise ValueError(
            f"images must be pixels in [0, 1] (got values in [{lo:.3g}, {hi:.3g}]); pass images "
            "before normalisation: every scenelab model normalises its input itself"
        )


def check_sizes(eps: float | Tensor, alpha: float | Tensor, steps: int, restarts: int) -> None:
    """Refuse a radius or step that is negative or not a number, and fewer than one step or
    run (a negative eps would silently attack nothing)."""
    for name, value in (("eps", eps), ("alpha", alpha)):
        values = torch.as_tensor(value, dtype=torch.float64)
        if not torch.isfinite(values).all() or (values < 0).any():
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps ({steps}) and restarts ({restarts}) must be at least 1")


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
    check_sizes(eps, alpha, steps, restarts)
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
