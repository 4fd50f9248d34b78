"""Threat models: the L-infinity and L2 balls PGD steps in and projects onto, in pixel units
(a random start, a step along the gradient, the projection of a perturbation onto the ball).
"""

from typing import Literal

import torch
from torch import Tensor

Norm = Literal["linf", "l2"]


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
