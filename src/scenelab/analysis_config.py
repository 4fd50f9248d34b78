"""The settings of the commands that study a trained model: `scenelab explain` (ExplainConfig)
and `scenelab attack` (AttackConfig and its presets), as the CLI's flags.
"""

from dataclasses import dataclass
from typing import Any

from .fields import option, parse_number

EXPLAIN_METHODS = (
    "saliency",
    "smoothgrad",
    "integrated_gradients",
    "grad_cam",
    "attention_rollout",
)


@dataclass(frozen=True, kw_only=True)
class ExplainConfig:
    method: str = option("saliency", "saliency method", choices=EXPLAIN_METHODS)
    objective: str = option(
        "loss", "gradient of the label's loss (course) or of its logit", choices=("loss", "logit")
    )
    reduce: str = option(
        "max", "colour-channel reduction of |gradient|", choices=("max", "sum", "l2")
    )
    samples: int = option(16, "smoothgrad: noisy copies per image", low=1)
    stdev: float = option(
        0.1, "smoothgrad: noise standard deviation in pixel units ([0, 1])", low=0
    )
    steps: int = option(32, "integrated_gradients: path points (Gauss-Legendre)", low=1)
    baseline: float = option(0.0, "integrated_gradients: grey level of the baseline image")
    layer: str | None = option(None, "grad_cam: module name (default: the last feature map)")
    num: int = option(8, "images to explain", low=1)
    select: str = option(
        "all",
        "which validation images: all, correctly or wrongly classified",
        choices=("all", "correct", "wrong"),
    )
    threshold: float = option(
        2.0,
        "red overlay where the map exceeds this many times its mean (the course: 2)",
        above=0,
    )
    per_image: bool = option(False, "red overlay: mean of each map instead of all maps together")
    overlay: str = option(
        "red",
        "red (the course's: red where the map exceeds --threshold x its mean) or heat (the map's "
        "colours blended over the image, with a colour bar)",
        choices=("red", "heat"),
    )
    format: str = option(
        "png",
        "picture format of the per-image figures (grid.png is always written too)",
        choices=("png", "pdf", "svg"),
    )
    seed: int = option(0, "seed for smoothgrad's noise and the randomised model of --score")


ATTACK_TARGETS = ("none", "least-likely", "random")
# The course template's attack: PGD towards the least-likely class of the clean logits (no
# labels involved), in normalised units, projected onto the ball only, from the clean image.
_COURSE_ATTACK = dict(attack="pgd", norm="linf", eps=0.1, alpha=0.01, steps=10, units="normalized")
_COURSE_ATTACK |= dict(target="least-likely", include_true=True, random_start=False, clamp=False)
ATTACK_PRESETS: dict[str, dict[str, Any]] = {"none": {}, "course": _COURSE_ATTACK}


@dataclass(frozen=True, kw_only=True)
class AttackConfig:
    preset: str = option(
        "none",
        "course: the course template's attack (PGD-10 to the least-likely "
        "class, eps 0.1 and step 0.01 in normalised units, no random start, no "
        "clamp); flags given with it override it",
        choices=tuple(ATTACK_PRESETS),
    )
    attack: str = option("pgd", "attack", choices=("pgd", "fgsm"))
    norm: str = option("linf", "threat model: L-infinity or L2 ball", choices=("linf", "l2"))
    eps: float = option(
        8 / 255, "ball radius in --units (default: 8/255; fractions accepted)", low=0
    )
    alpha: float | None = option(None, "PGD step in --units (default: 2.5 x eps / steps)", above=0)
    steps: int = option(10, "PGD iterations", low=1)
    target: str = option(
        "none",
        "none (untargeted), the least-likely class or a random other class",
        choices=ATTACK_TARGETS,
    )
    retarget: bool = option(
        False,
        "least-likely: re-pick the target from each step's logits "
        "instead of fixing it from the clean ones",
    )
    include_true: bool = option(
        False, "targets may be the true class (the course's argmin uses no labels)"
    )
    random_start: bool = option(True, "PGD: start from a random point of the ball")
    restarts: int = option(
        1, "PGD runs from new random starts; each image keeps its strongest", low=1
    )
    clamp: bool = option(True, "keep adversarial images in [0, 1]")
    units: str = option(
        "pixels",
        "units of --eps and --alpha: pixels ([0, 1]) or normalized (x the "
        "model's per-channel std, as the course's)",
        choices=("pixels", "normalized"),
    )
    eps_sweep: str = option("", "robust accuracy at each eps, e.g. 0,1/255,2/255,4/255,8/255")
    num: int = option(8, "images in the picture grid", low=1)
    select: str = option(
        "first",
        "which images the grid shows: the first --num, or the first --num whose prediction "
        "the attack flipped",
        choices=("first", "flipped"),
    )
    seed: int = option(0, "seed for random starts and random targets")

    def __post_init__(self) -> None:
        if self.units == "normalized" and self.norm != "linf":
            raise ValueError("--units normalized gives per-channel radii: use it with --norm linf")
        if self.retarget and (self.target != "least-likely" or self.attack != "pgd"):
            raise ValueError(
                "--retarget re-picks least-likely targets: use --attack pgd --target least-likely"
            )

    def step_size(self, eps: float) -> float:
        return self.alpha if self.alpha is not None else 2.5 * eps / self.steps

    def sweep(self) -> list[float]:
        try:
            return [parse_number(v) for v in self.eps_sweep.replace(",", " ").split()]
        except ValueError:
            raise ValueError(
                f"--eps-sweep expects numbers such as 0,1/255,2/255, got {self.eps_sweep!r}"
            ) from None
