"""Training objectives for the one training loop: `train_one_epoch(model, loader, opt, objective)`.

An objective maps (model, images, labels, epochs done) to (loss, logits for the batch's
accuracy). Plain training's is `CrossEntropy` (with label smoothing); the adversarial ones
(`AdversarialObjective`) are all L-infinity PGD in pixel units from `attack.pgd`:

- `goodfellow`: the course's mixed objective, `weight * CE(x) + (1 - weight) * CE(x_mixed)`,
  where `x_mixed` is the batch with a `fraction` of its images replaced by adversarial ones.
  Fraction 1 is Goodfellow et al. (2015); weight 0 with fraction 0.5 is the course report's
  recipe (half of each batch replaced); weight 1 or fraction 0 is plain training, exactly.
- `madry`: CE on PGD examples of the whole batch (Madry et al. 2018).
- `fgsm-rs`: the same with one step of 1.25 eps from a random start (Wong et al. 2020).
- `trades`: `CE(x) + beta * KL(f(x_adv) || f(x))`, x_adv maximising the KL (Zhang et al.
  2019); its inner maximisation starts from a uniform random point of the ball (the reference
  code starts 0.001-Gaussian-close to x).

The radius rises linearly from 0 over `adv_warmup_epochs` (the step scales with it). With
`adv_units="normalized"` (the course's units), radius and step are in normalised units (x the
model's per-channel std in pixels), the images are not clamped to [0, 1], and the least-likely
target is taken among all classes (the course's argmin uses no labels).

In DDP, each training step runs exactly one forward pass through the DDP wrapper (the one that
DDP's gradient hooks are prepared for); the attack's passes and any second loss term use the
wrapped module itself. Gradients of all of them reach the parameters in the one backward pass,
and DDP averages them over the processes.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attack import course_units, least_likely_target, pgd
from .config import ADV_DEFAULTS, AdvConfig, RunConfig
from .modes import eval_mode
from .runtime import unwrap

Objective = Callable[[nn.Module, Tensor, Tensor, float], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class CrossEntropy:
    """Plain training: the cross-entropy of the batch, with label smoothing."""

    label_smoothing: float = 0.0

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, epochs: float = 0.0):
        logits = model(x)
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing), logits


def build_objective(cfg: RunConfig) -> Objective:
    """The run's objective: adversarial when `cfg.adv.adv_train` says so, else plain."""
    if cfg.adv.adv_train == "none":
        return CrossEntropy(cfg.optim.label_smoothing)
    return AdversarialObjective(cfg.adv, label_smoothing=cfg.optim.label_smoothing)


class AdversarialObjective:
    def __init__(self, cfg: AdvConfig, *, label_smoothing: float = 0.0) -> None:
        if cfg.adv_train not in ADV_DEFAULTS:
            raise ValueError(f"unknown adversarial training method {cfg.adv_train!r}")
        self.cfg, self.label_smoothing = cfg, label_smoothing

    def eps_at(self, epochs: float) -> float:
        """The radius after `epochs` (fractional) epochs of training."""
        warmup = self.cfg.adv_warmup_epochs
        return self.cfg.adv_eps * (min(1.0, epochs / warmup) if warmup > 0 else 1.0)

    def step_at(self, eps: float) -> float:
        """The attack step at radius `eps`: the configured step, scaled during the warm-up."""
        return self.cfg.step_size(self.cfg.adv_eps) * eps / self.cfg.adv_eps

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, epochs: float) -> Tensor:
        """PGD examples at the current radius, towards the least-likely class if asked."""
        cfg, eps, model = self.cfg, self.eps_at(epochs), unwrap(model)
        if eps == 0:
            return x
        target = None
        if cfg.adv_target == "least-likely":
            with eval_mode(model), torch.no_grad():
                target = least_likely_target(model(x), None if cfg.course_units else y)
        scale = course_units(1.0, model) if cfg.course_units else 1.0
        return pgd(
            model,
            x,
            y,
            eps=eps * scale,
            alpha=self.step_at(eps) * scale,
            steps=cfg.steps,
            target=target,
            random_start=ADV_DEFAULTS[cfg.adv_train]["random_start"],
            clamp=not cfg.course_units,
            eval_model=cfg.adv_bn_mode == "eval",
        )

    def _ce(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, epochs: float):
        method = self.cfg.adv_train
        if method == "goodfellow":
            return self._goodfellow(model, x, y, epochs)
        if method == "trades":
            return self._trades(model, x, y, epochs)
        logits = model(self.perturb(model, x, y, epochs))  # madry, fgsm-rs
        return self._ce(logits, y), logits

    def _goodfellow(self, model, x, y, epochs):
        weight, k = self.cfg.adv_weight, round(self.cfg.adv_fraction * len(x))
        if weight == 1 or k == 0:  # plain training, computed as plain training
            logits = model(x)
            return self._ce(logits, y), logits
        mixed = torch.cat([self.perturb(model, x[:k], y[:k], epochs), x[k:]])
        mixed_logits = model(mixed)
        if weight == 0:
            return self._ce(mixed_logits, y), mixed_logits
        logits = unwrap(model)(x)
        loss = weight * self._ce(logits, y) + (1 - weight) * self._ce(mixed_logits, y)
        return loss, logits

    def _trades(self, model, x, y, epochs):
        cfg, eps = self.cfg, self.eps_at(epochs)
        logits = model(x)
        if eps == 0:
            return self._ce(logits, y), logits
        model = unwrap(model)
        if cfg.adv_bn_mode == "eval":  # as the reference code: the attack sees eval mode
            with eval_mode(model), torch.no_grad():
                p_clean = model(x).softmax(1)
        else:
            p_clean = logits.detach().softmax(1)

        def divergence(adv_logits: Tensor, _: Tensor) -> Tensor:
            return F.kl_div(adv_logits.log_softmax(1), p_clean, reduction="sum")

        x_adv = pgd(
            model,
            x,
            y,
            eps=eps,
            alpha=self.step_at(eps),
            steps=cfg.steps,
            eval_model=cfg.adv_bn_mode == "eval",
            loss_fn=divergence,
        )
        robust = F.kl_div(model(x_adv).log_softmax(1), logits.softmax(1), reduction="batchmean")
        return self._ce(logits, y) + cfg.trades_beta * robust, logits
