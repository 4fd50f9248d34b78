"""Saliency maps drawn over their images: the course's red overlay (`red_overlay`) and a
colour-mapped blend (`heat_overlay`).
"""

import torch
from torch import Tensor


def red_overlay(
    images: Tensor, maps: Tensor, *, alpha: float = 2.0, per_image: bool = False
) -> Tensor:
    """The course's overlay: images (B, 3, H, W) with pixels painted red where the map exceeds
    `alpha` times its mean, taken over all the maps given (the course) or over each image."""
    mean = maps.mean((1, 2), keepdim=True) if per_image else maps.mean()
    mask = (maps > alpha * mean)[:, None]  # (B, 1, H, W)
    red = torch.tensor([1.0, 0.0, 0.0], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return torch.where(mask, red, images)


def heat_overlay(
    images: Tensor, maps: Tensor, *, cmap: str = "jet", opacity: float = 0.5
) -> Tensor:
    """Images (B, 3, H, W) blended with each map scaled to [0, 1] and coloured by `cmap`."""
    import matplotlib

    scaled = maps / maps.amax((1, 2), keepdim=True).clamp_min(torch.finfo(maps.dtype).tiny)
    rgb = matplotlib.colormaps[cmap](scaled.detach().cpu().numpy())[..., :3]  # (B, H, W, 3)
    heat = torch.as_tensor(rgb, dtype=images.dtype, device=images.device).permute(0, 3, 1, 2)
    return (1 - opacity) * images + opacity * heat
