"""`evaluate` (loss, top-1/top-5, confusion matrix, flip TTA, out-of-memory retries) and
`robust_accuracy` (seeded PGD on a fixed set of images), used by the training loop and the CLI.
"""

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .attack import course_units, least_likely_target, pgd
from .attack_eval import AttackResult, evaluate_attack
from .config import RunConfig
from .metrics import RunningSums, confusion_matrix, correct_topk
from .modes import eval_mode
from .runtime import Precision, all_reduce_, release_cached_memory


def batch_stats(logits: Tensor, y: Tensor, loss: Tensor) -> dict[str, Tensor]:
    acc1, acc5 = correct_topk(logits.detach(), y, (1, 5))
    return {"loss": loss.detach() * len(y), "acc1": acc1, "acc5": acc5}


PERCENT = {"acc1": 100.0, "acc5": 100.0}


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    tta: bool = False,
    tta_mean: str = "logits",
    num_classes: int | None = None,
    precision: Precision | None = None,
) -> dict[str, Any]:
    """Mean loss, acc1 and acc5 (percent); with `num_classes`, also the confusion matrix.

    tta: average the logits of the image and its horizontal mirror (`tta_mean="softmax"`: their
    probabilities, returned as log-probabilities: same ranking, the loss of the mean). A batch that
    runs out of device memory is retried in halves (down to single images), as the evaluation batch
    may be larger than what training needed. In DDP, each process evaluates its share of the split
    (give `model` without its DDP wrapper) and the results are summed over all processes.
    """
    sums, confusion = RunningSums(), None
    if num_classes:
        confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    precision = precision or Precision(device)
    with eval_mode(model):
        for x, y in loader:
            x = x.to(device, non_blocking=True, memory_format=precision.memory_format)
            y = y.to(device, non_blocking=True)
            with precision.autocast():
                logits = _halving_on_oom(
                    lambda part: tta_logits(model, part, tta, tta_mean), x
                ).float()
            sums.add(len(y), **batch_stats(logits, y, F.cross_entropy(logits, y)))
            if num_classes:
                confusion += confusion_matrix(logits.argmax(1), y, num_classes)
    metrics: dict[str, Any] = sums.all_reduce(("loss", "acc1", "acc5"), device).means(PERCENT)
    if num_classes:
        metrics["confusion"] = all_reduce_(confusion).cpu()
    return metrics


def tta_logits(model: nn.Module, x: Tensor, tta: bool, tta_mean: str = "logits") -> Tensor:
    """The model's logits for x; with `tta`, averaged with its mirror's (see `evaluate`)."""
    logits = model(x)
    if not tta:
        return logits
    mirrored = model(x.flip(-1))
    if tta_mean == "logits":
        return (logits + mirrored) / 2
    if tta_mean != "softmax":
        raise ValueError(f"unknown tta_mean {tta_mean!r}; choose logits or softmax")
    probs = (logits.softmax(1) + mirrored.softmax(1)) / 2
    return probs.clamp_min(1e-12).log()  # log-probabilities: same ranking and loss


def _halving_on_oom(forward: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """forward(x), or on an out-of-memory error the forward of each half, concatenated."""
    try:
        return forward(x)
    except torch.OutOfMemoryError:
        if len(x) == 1:
            raise
    release_cached_memory(x.device)  # outside the handler, so the failed frames are freed
    half = (len(x) + 1) // 2
    return torch.cat([_halving_on_oom(forward, x[:half]), _halving_on_oom(forward, x[half:])])


def robust_accuracy(
    model: nn.Module, loader: DataLoader, cfg: RunConfig, *, device: torch.device
) -> AttackResult:
    """Untargeted PGD (`adv_eval_steps` steps of 2.5 eps / steps, random start) at `adv_eps` on
    `loader`; in the course's units, the course's attack instead (`adv_eval_steps` steps of
    `adv_step_size` towards the least-likely class, from the clean image, no clamp). The random
    start is seeded from the run's seed, so every epoch is measured on the same footing, and the
    global random state is left as it was."""
    eps, steps = cfg.adv.adv_eps, cfg.adv.adv_eval_steps

    def perturb(m: nn.Module, x: Tensor, y: Tensor, _: Tensor | None) -> Tensor:
        if not cfg.adv.course_units:
            return pgd(m, x, y, eps=eps, alpha=2.5 * eps / steps, steps=steps)
        with eval_mode(m), torch.no_grad():
            target = least_likely_target(m(x))
        scale = course_units(1.0, m)
        alpha = cfg.adv.step_size(eps) * scale
        return pgd(
            m,
            x,
            y,
            eps=eps * scale,
            alpha=alpha,
            steps=steps,
            target=target,
            random_start=False,
            clamp=False,
        )

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.train.seed)
        return evaluate_attack(model, loader, perturb, device=device)


def validate(model, ema, loader, cfg: RunConfig, precision: Precision, num_classes: int):
    """Validation of the model (with the confusion matrix) and of its weight average."""
    device = precision.device
    tta = {"tta": cfg.train.tta, "tta_mean": cfg.train.tta_mean}
    val = evaluate(
        model, loader, device=device, num_classes=num_classes, precision=precision, **tta
    )
    if ema is not None:
        averaged = evaluate(ema.module, loader, device=device, precision=precision, **tta)
        val |= {f"ema_{k}": v for k, v in averaged.items()}
    return val


def robust_row(model, loader, cfg: RunConfig, device: torch.device) -> dict[str, float]:
    """Robust accuracy as the epoch's row records it: `val_robust_acc1` and `val_robust_drop`
    (percent of the clean top-1 lost)."""
    robust = robust_accuracy(model, loader, cfg, device=device)
    drop = 100 * (1 - robust.adv_acc1 / max(robust.clean_acc1, 1e-9))
    return {"val_robust_acc1": robust.adv_acc1, "val_robust_drop": drop}
