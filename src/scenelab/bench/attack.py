"""`scenelab bench attack`: our PGD and FGSM against torchattacks' on the same model and batch.

Random starts are off, so both compute the same adversarial images from the same inputs; the
table says how far apart they end (float rounding can flip the sign of a near-zero gradient
pixel). The least-likely case includes picking the targets, which torchattacks does with a
Python loop over the batch. torchattacks is the reference, installed with the test extra
(`pip install -e '.[test]'`); it is not a runtime dependency.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..attack import fgsm, least_likely_target, pgd
from ..document import format_table
from .config import AttackBenchConfig
from .harness import model_and_images, paired_ms, ratio

L2_EPS = 0.5
NOTE = (
    "L2: torchattacks adds 1e-10 to the gradient norm of its batch-mean loss, so its step "
    "depends on the batch size; with its eps_for_division set to 0 both give identical images."
)


@dataclass(frozen=True)
class AttackTiming:
    case: str
    ours_ms: float
    theirs_ms: float
    max_diff: float  # largest |ours - theirs| over all pixels
    differing: float  # share of pixels that differ by more than 1e-6


def _cases(model, cfg: AttackBenchConfig) -> dict[str, tuple[Callable, Callable]]:
    try:
        import torchattacks as ta
    except ImportError:
        raise ValueError(
            "scenelab bench attack compares with torchattacks, which is not installed: "
            "pip install -e '.[test]' (or pip install torchattacks)"
        ) from None
    eps, alpha, steps = cfg.eps, cfg.eps / 4, cfg.steps

    def ours_least_likely(x, y):
        with torch.no_grad():
            target = least_likely_target(model(x), y)
        return pgd(
            model, x, y, eps=eps, alpha=alpha, steps=steps, target=target, random_start=False
        )

    least_likely = ta.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    least_likely.set_mode_targeted_least_likely(quiet=True)
    return {
        f"PGD-{steps} linf": (
            lambda x, y: pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, random_start=False),
            ta.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False),
        ),
        f"PGD-{steps} linf, least-likely": (ours_least_likely, least_likely),
        f"PGD-{steps} L2": (
            lambda x, y: pgd(
                model,
                x,
                y,
                eps=L2_EPS,
                alpha=L2_EPS / 4,
                steps=steps,
                norm="l2",
                random_start=False,
            ),
            ta.PGDL2(model, eps=L2_EPS, alpha=L2_EPS / 4, steps=steps, random_start=False),
        ),
        "FGSM linf": (lambda x, y: fgsm(model, x, y, eps=eps), ta.FGSM(model, eps=eps)),
    }


def attack_times(cfg: AttackBenchConfig, device: torch.device) -> list[AttackTiming]:
    model, x, y = model_and_images(
        cfg.model, cfg.num_classes, cfg.image_size, cfg.batch_size, device
    )
    timings = []
    for case, (ours, theirs) in _cases(model, cfg).items():
        diff: Tensor = (ours(x, y) - theirs(x, y)).abs()
        ours_ms, theirs_ms = paired_ms(
            lambda xy, f=ours: f(*xy), lambda xy, f=theirs: f(*xy), (x, y), cfg.repeats, device
        )
        share = (diff > 1e-6).double().mean().item()
        timings.append(AttackTiming(case, ours_ms, theirs_ms, diff.max().item(), share))
    return timings


def table(timings: list[AttackTiming]) -> str:
    rows = [
        [
            t.case,
            f"{t.ours_ms:.1f}",
            f"{t.theirs_ms:.1f}",
            ratio(t.ours_ms, t.theirs_ms),
            f"{t.max_diff:.2g}",
            f"{100 * t.differing:.3f}",
        ]
        for t in timings
    ]
    header = [
        "attack",
        "scenelab ms",
        "torchattacks ms",
        "scenelab/torchattacks",
        "max |diff|",
        "pixels differing %",
    ]
    return format_table(header, rows)
