"""How good is a saliency map? Scores against ground-truth object masks, and a sanity check.

- Pointing game (Zhang et al. 2016): does the map's maximum fall inside the object mask?
- Mask energy: the share of the map's mass inside the mask; chance is the mask's area share.
- Model randomisation (Adebayo et al. 2018): maps of the trained model against maps of the same
  architecture with freshly initialised weights, compared by Spearman rank correlation. A map
  that barely changes does not depend on what the model learned, and fails the check.

Works on any dataset that yields (image, label, mask), such as the synthetic scenes.
"""

import math
import time
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.data import DataLoader

from .analysis_config import EXPLAIN_METHODS, ExplainConfig
from .explain import compute_maps, is_vit, predict
from .metrics import mask_energy, pointing_game, rank_correlation
from .tracking import Console

SANITY_MAX_CORRELATION = 0.5  # above this mean rank correlation, a method fails the check


@dataclass(frozen=True)
class MethodScore:
    method: str
    images: int
    pointing_game: float  # percent of images
    mask_energy: float  # percent of the map's mass, mean over images
    chance_energy: float  # percent of the image the masks cover (a uniform map's energy)
    randomised_rank_corr: float  # mean Spearman correlation, trained vs re-initialised model
    seconds: float

    @property
    def passes_sanity(self) -> bool:
        return self.randomised_rank_corr < SANITY_MAX_CORRELATION


def applicable_methods(model: nn.Module) -> list[str]:
    """Every method but Grad-CAM for ViTs, every method but attention rollout for CNNs."""
    skip = "grad_cam" if is_vit(model) else "attention_rollout"
    return [m for m in EXPLAIN_METHODS if m != skip]


def _nanmean(values: list[torch.Tensor]) -> float:
    v = torch.cat(values).double()
    v = v[~v.isnan()]
    return v.mean().item() if len(v) else math.nan


def score_method(
    model: nn.Module,
    randomised: nn.Module,
    loader: DataLoader,
    cfg: ExplainConfig,
    *,
    device: torch.device,
    console: Console | None = None,
) -> MethodScore:
    """Scores of `cfg.method` over the (image, label, mask) batches of `loader`.

    Both models explain the trained model's predicted class, so only the weights differ.
    """
    pointing, energy, chance, corr, n = [], [], [], [], 0
    start = time.perf_counter()
    progress = (console or Console()).progress(len(loader), cfg.method)
    for x, _, masks in loader:
        x, masks = x.to(device), masks.to(device).bool()
        if masks.ndim == 4:
            masks = masks[:, 0]
        target = predict(model, x)
        torch.manual_seed(cfg.seed)  # the same smoothgrad noise for both models
        maps = compute_maps(model, x, cfg, target)
        torch.manual_seed(cfg.seed)
        random_maps = compute_maps(randomised, x, cfg, target)
        pointing.append(pointing_game(maps, masks))
        energy.append(mask_energy(maps, masks))
        chance.append(masks.flatten(1).double().mean(1))
        corr.append(rank_correlation(maps, random_maps))
        n += len(x)
        progress.step()
    progress.close()
    return MethodScore(
        method=cfg.method,
        images=n,
        pointing_game=100 * _nanmean(pointing),
        mask_energy=100 * _nanmean(energy),
        chance_energy=100 * _nanmean(chance),
        randomised_rank_corr=_nanmean(corr),
        seconds=time.perf_counter() - start,
    )


def score_methods(
    model: nn.Module,
    randomised: nn.Module,
    loader: DataLoader,
    cfg: ExplainConfig,
    *,
    device: torch.device,
    console: Console | None = None,
) -> list[MethodScore]:
    """`score_method` for every method that applies to the model, with `cfg`'s settings."""
    return [
        score_method(
            model, randomised, loader, replace(cfg, method=m), device=device, console=console
        )
        for m in applicable_methods(model)
    ]
