"""Adversarial training's settings (`scenelab train --adv-train ...`): the methods, their
defaults, and `AdvConfig`, one section of `config.RunConfig`."""

from dataclasses import dataclass
from typing import Any

from .fields import option

ADV_METHODS = ("none", "goodfellow", "madry", "fgsm-rs", "trades")
ADV_UNITS = ("pixels", "normalized")
# Per method: PGD steps, random start, and the step as a multiple of eps (None: 2.5 / steps).
ADV_DEFAULTS: dict[str, dict[str, Any]] = {
    "goodfellow": {"steps": 5, "random_start": False, "step": None},  # the course's PGD-5
    "madry": {"steps": 7, "random_start": True, "step": None},  # Madry et al.'s PGD-7
    "fgsm-rs": {"steps": 1, "random_start": True, "step": 1.25},  # Wong et al.
    "trades": {"steps": 10, "random_start": True, "step": None},  # Zhang et al.
}


@dataclass(frozen=True, kw_only=True)
class AdvConfig:
    """Adversarial training: the objective, its attack (L-infinity, pixel units) and the robust
    evaluation every epoch. None means the method's own default."""

    adv_train: str = option("none", "adversarial training method", choices=ADV_METHODS)
    adv_eps: float = option(
        8 / 255,
        "attack radius in pixel units (default: 8/255; fractions accepted)",
        low=0,
    )
    adv_step_size: float | None = option(
        None,
        "attack step (default: 2.5 x eps / steps; fgsm-rs: 1.25 x eps)",
        above=0,
    )
    adv_steps: int | None = option(
        None,
        "attack steps (default: goodfellow 5, madry 7, fgsm-rs 1, trades 10; 0: the clean images)",
        low=0,
    )
    adv_target: str = option(
        "none",
        "goodfellow, madry, fgsm-rs: untargeted or towards the least-likely class",
        choices=("none", "least-likely"),
    )
    adv_units: str = option(
        "pixels",
        "units of --adv-eps and --adv-step-size: pixels ([0, 1], images kept in it) or "
        "normalized (x the model's per-channel std, no clamp, least-likely among all classes: "
        "the course's; the robust evaluation then runs the course attack with this step)",
        choices=ADV_UNITS,
    )
    adv_fraction: float = option(
        0.5,
        "goodfellow: share of each batch replaced by adversarial examples",
        low=0,
        high=1,
    )
    adv_weight: float = option(
        0.5,
        "goodfellow: weight of the clean loss; the mixed batch gets 1 - weight",
        low=0,
        high=1,
    )
    trades_beta: float = option(6.0, "trades: weight of the robustness (KL) term", low=0)
    adv_warmup_epochs: float = option(
        0.0, "raise eps linearly from 0 over these first epochs", low=0
    )
    adv_bn_mode: str = option(
        "eval",
        "model mode while the attack runs: eval (BatchNorm running "
        "statistics) or train (batch statistics)",
        choices=("eval", "train"),
    )
    adv_eval_limit: int | None = option(
        None,
        "robust accuracy every epoch on the first N val images (default: 256 with "
        "--adv-train, else 0: off)",
        low=0,
    )
    adv_eval_steps: int = option(10, "PGD steps of the robust evaluation (at --adv-eps)", low=1)

    def __post_init__(self) -> None:
        if not 0 <= self.adv_fraction <= 1 or not 0 <= self.adv_weight <= 1:
            raise ValueError("--adv-fraction and --adv-weight are shares between 0 and 1")
        if self.adv_units == "normalized" and self.adv_train in ("trades", "fgsm-rs"):
            raise ValueError(
                f"--adv-units normalized is the course's attack (no random start, no clamp); "
                f"{self.adv_train} starts at random: use it with goodfellow or madry"
            )
        if self.adv_train == "trades" and self.adv_target != "none":
            raise ValueError("trades maximises a divergence, not a class's loss: drop --adv-target")
        cls = type(self)  # its class attributes are the defaults
        mixing = (self.adv_fraction, self.adv_weight) != (cls.adv_fraction, cls.adv_weight)
        if self.adv_train != "goodfellow" and mixing:
            raise ValueError("--adv-fraction and --adv-weight apply to --adv-train goodfellow")
        if self.adv_train != "trades" and self.trades_beta != cls.trades_beta:
            raise ValueError("--trades-beta applies to --adv-train trades")

    @property
    def _defaults(self) -> dict[str, Any]:
        """The method's defaults; without adversarial training, the robust evaluation's."""
        evaluation = {"steps": self.adv_eval_steps, "random_start": True, "step": None}
        return ADV_DEFAULTS.get(self.adv_train, evaluation)

    @property
    def steps(self) -> int:
        return self.adv_steps or self._defaults["steps"]

    @property
    def course_units(self) -> bool:
        return self.adv_units == "normalized"

    def step_size(self, eps: float) -> float:
        if self.adv_step_size is not None:
            return self.adv_step_size
        multiple = self._defaults["step"]
        return eps * (multiple if multiple is not None else 2.5 / self.steps)

    @property
    def eval_limit(self) -> int:
        if self.adv_eval_limit is not None:
            return self.adv_eval_limit
        return 256 if self.adv_train != "none" else 0
