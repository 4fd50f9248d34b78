"""A model's layers as a table: what a student draws in a report (name, type, output shape,
parameters), found by running one image through it with forward hooks on every leaf module."""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerRow:
    name: str  # the module's path in the model (features.0)
    kind: str  # its class name
    output: tuple[int, ...]  # the output shape of one image, batch dimension left out
    params: int  # its own parameters (not its children's)
    detail: str  # the module's extra_repr: kernel, stride, widths


def layer_rows(model: nn.Module, image_size: int) -> list[LayerRow]:
    """Every leaf module in the order it runs on a (1, 3, `image_size`, `image_size`) input; a
    module called more than once is listed at its first call."""
    rows: dict[str, LayerRow] = {}

    def record(name: str, module: nn.Module, output) -> None:
        if name in rows or not isinstance(output, torch.Tensor):
            return
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows[name] = LayerRow(
            name, type(module).__name__, tuple(output.shape[1:]), params, module.extra_repr()
        )

    hooks = [
        module.register_forward_hook(lambda m, _, out, name=name: record(name, m, out))
        for name, module in model.named_modules()
        if name and not any(True for _ in module.children())
    ]
    p = next(model.parameters())
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(torch.rand(1, 3, image_size, image_size, dtype=p.dtype, device=p.device))
            model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return list(rows.values())
