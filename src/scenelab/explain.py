"""Saliency maps: where a classifier looks, as (B, H, W) maps over pixel-space images in [0, 1].

- `saliency`: the input gradient (Simonyan et al. 2013). The course method differentiates the
  cross-entropy loss of the predicted label (`objective="loss"`); captum's Saliency
  differentiates the target logit (`objective="logit"`). Then |gradient|, reduced over the
  colour channels (max as in the course, sum, or L2).
- `smoothgrad`: the mean |gradient| over noisy copies of the image (Smilkov et al. 2017).
- `integrated_gradients`: (x - x0) times the path integral of the logit's gradient from a
  baseline x0 (Sundararajan et al. 2017), with captum's Gauss-Legendre rule.
- `grad_cam`: a layer's activations weighted by their mean gradients, ReLU, upsampled
  (Selvaraju et al. 2017); CNNs only.
- `attention_rollout`: attention matrices with the residual mixed in, multiplied through the
  blocks (Abnar & Zuidema 2020); ViTs only, class-agnostic.

Every method runs the model in eval mode (its mode is restored), defaults the target to the
predicted class, takes gradients with torch.autograd.grad on the input (parameter .grad stays
untouched), and computes each image's map from that image alone. Drawing the maps over their
images is in `overlays`.
"""

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .analysis_config import ExplainConfig
from .attack import check_pixels
from .models import MultiScaleViT, Normalize, VisionTransformer
from .modes import eval_mode

Reduce = Literal["max", "sum", "l2"]
Objective = Literal["loss", "logit"]


@torch.no_grad()
def predict(model: nn.Module, x: Tensor) -> Tensor:
    """The predicted class of each image (B,), in eval mode."""
    with eval_mode(model):
        return model(x).argmax(1)


def input_gradient(
    model: nn.Module, x: Tensor, target: Tensor, objective: Objective = "logit"
) -> Tensor:
    """d objective / d x (B, 3, H, W); the objective is summed over the batch, so each image's
    gradient is that of its own loss or logit. The caller sets eval mode."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        if objective == "loss":
            out = F.cross_entropy(logits, target, reduction="sum")
        elif objective == "logit":
            out = logits.gather(1, target[:, None]).sum()
        else:
            raise ValueError(f"objective must be 'loss' or 'logit', got {objective!r}")
        (grad,) = torch.autograd.grad(out, x)
    return grad


def reduce_channels(attr: Tensor, reduce: Reduce = "max") -> Tensor:
    """(B, C, H, W) attributions -> (B, H, W) non-negative map."""
    if reduce == "max":
        return attr.abs().amax(1)
    if reduce == "sum":
        return attr.abs().sum(1)
    if reduce == "l2":
        return attr.norm(dim=1)
    raise ValueError(f"reduce must be max, sum or l2, got {reduce!r}")


def _at_least_one(**counts: int) -> None:
    """Refuse a count of samples, steps or images below one, naming the argument."""
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def _setup(model: nn.Module, x: Tensor, target: Tensor | None) -> Tensor:
    check_pixels(x)
    return predict(model, x) if target is None else target.to(x.device)


def saliency(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None = None,
    *,
    objective: Objective = "loss",
    reduce: Reduce = "max",
) -> Tensor:
    """Vanilla gradient map (B, H, W); the defaults are the course method."""
    target = _setup(model, x, target)
    with eval_mode(model):
        return reduce_channels(input_gradient(model, x, target, objective), reduce)


def smoothgrad(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None = None,
    *,
    samples: int = 16,
    stdev: float = 0.1,
    objective: Objective = "loss",
    reduce: Reduce = "max",
    batch_size: int = 256,
) -> Tensor:
    """SmoothGrad map (B, H, W): mean |gradient| over `samples` copies of each image with
    Gaussian noise of `stdev` (pixel units) added, then reduced over channels.

    The noise is drawn like captum's NoiseTunnel (one torch.normal call, copies of an image
    adjacent), so the same seed gives the same map. Forward passes run `batch_size` noisy
    images at a time.
    """
    _at_least_one(samples=samples, batch_size=batch_size)
    if not math.isfinite(stdev) or stdev < 0:
        raise ValueError(f"stdev must be a finite number >= 0, got {stdev}")
    target = _setup(model, x, target)
    noisy = x.repeat_interleave(samples, 0)  # (B * samples, 3, H, W), image-major
    noisy = noisy + torch.normal(0, torch.full_like(noisy, stdev))
    targets = target.repeat_interleave(samples)
    starts = range(0, len(noisy), batch_size)
    with eval_mode(model):
        parts = [
            input_gradient(model, noisy[i : i + batch_size], targets[i : i + batch_size], objective)
            for i in starts
        ]
    grad = torch.cat(parts).abs_()
    return reduce_channels(grad.view(len(x), samples, *x.shape[1:]).mean(1), reduce)


def integrated_gradients(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None = None,
    *,
    steps: int = 32,
    baseline: Tensor | float = 0.0,
    batch_size: int = 256,
    reduce: Reduce = "max",
) -> Tensor:
    """Integrated-gradients map (B, H, W) of the target logit.

    attr = (x - x0) * sum_k w_k * grad f(x0 + a_k (x - x0)), with the Gauss-Legendre nodes a_k
    and weights w_k on [0, 1] (captum's default rule); `baseline` x0 is a tensor like `x` or a
    grey level (0: black). Forward passes run `batch_size` images at a time.
    """
    _at_least_one(steps=steps, batch_size=batch_size)
    target = _setup(model, x, target)
    baseline = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (nodes + 1) / 2, weights / 2  # from [-1, 1] to [0, 1]
    total = torch.zeros_like(x)
    per_chunk = max(1, batch_size // len(x))  # path points per forward pass
    with eval_mode(model):
        for start in range(0, steps, per_chunk):
            a = torch.as_tensor(alphas[start : start + per_chunk], dtype=x.dtype, device=x.device)
            w = torch.as_tensor(weights[start : start + per_chunk], dtype=x.dtype, device=x.device)
            points = baseline + a.view(-1, 1, 1, 1, 1) * (x - baseline)  # (k, B, 3, H, W)
            grad = input_gradient(model, points.flatten(0, 1), target.repeat(len(a)), "logit")
            total += (grad.view_as(points) * w.view(-1, 1, 1, 1, 1)).sum(0)
    return reduce_channels((x - baseline) * total, reduce)


def default_cam_layer(model: nn.Module, x: Tensor) -> str:
    """The last module (in execution order) whose output is a feature map larger than 1x1:
    SimpleNet's `features`, resnet_bn's `final`, ResNet-18's `backbone.layer4`."""
    if isinstance(model, VisionTransformer | MultiScaleViT):
        raise ValueError("grad_cam needs a CNN's feature map; for ViTs use attention_rollout")
    seen: list[str] = []

    def record(name: str, out: object) -> None:
        if isinstance(out, Tensor) and out.ndim == 4 and out.shape[-2:].numel() > 1:
            seen.append(name)

    hooks = [
        m.register_forward_hook(lambda m, args, out, name=name: record(name, out))
        for name, m in model.named_modules()
        if name and not isinstance(m, Normalize)
    ]
    try:
        with torch.no_grad(), eval_mode(model):
            model(x[:1])
    finally:
        for hook in hooks:
            hook.remove()
    if not seen:
        raise ValueError("grad_cam found no spatial feature map in this model; pass --layer")
    return seen[-1]


def grad_cam(
    model: nn.Module, x: Tensor, target: Tensor | None = None, *, layer: str | None = None
) -> Tensor:
    """Grad-CAM map (B, H, W): ReLU(sum_k mean(dy/dA_k) A_k) at `layer` (a module name, default
    the last spatial feature map), upsampled bilinearly to the input size."""
    target = _setup(model, x, target)
    layer = layer or default_cam_layer(model, x)
    module = dict(model.named_modules()).get(layer)
    if module is None:
        raise ValueError(f"the model has no layer {layer!r}")
    captured: list[Tensor] = []
    hook = module.register_forward_hook(lambda m, a, out: captured.append(out))
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model(x.detach())
            (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), captured[0])
    finally:
        hook.remove()
    acts = captured[0].detach()  # (B, K, h, w)
    cam = F.relu((grad.mean((2, 3), keepdim=True) * acts).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear").squeeze(1)


def _rollout(vit: VisionTransformer, x: Tensor, size: tuple[int, int]) -> Tensor:
    """Rollout over one ViT's blocks, as a map (B, H, W) upsampled to `size`."""
    maps = vit.attention_maps(x)  # each (B, h, N, N)
    B, N = len(x), maps[0].shape[-1]
    eye = torch.eye(N, dtype=x.dtype, device=x.device)
    rollout = eye.expand(B, N, N)
    for attn in maps:
        a = 0.5 * attn.mean(1) + 0.5 * eye  # heads averaged, the residual path mixed in
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    # Mean pooling feeds every output token to the head: average their rows.
    tokens = rollout.mean(1)  # (B, N): how much each input token reaches the pooled feature
    h = x.shape[-2] // vit.patch_embed.proj.stride[0]  # token grid rows
    grid = tokens.view(B, 1, h, N // h)
    return F.interpolate(grid, size=size, mode="bilinear").squeeze(1)


def attention_rollout(model: nn.Module, x: Tensor, target: Tensor | None = None) -> Tensor:
    """Attention-rollout map (B, H, W) of a ViT (the multi-scale ViT: the mean over branches).

    Class-agnostic: `target` is accepted for a common signature and ignored.
    """
    check_pixels(x)
    if isinstance(model, VisionTransformer):
        branches, x_in = [model], x
    elif isinstance(model, MultiScaleViT):
        branches, x_in = list(model.branches), model.normalize(x)
    else:
        raise ValueError(
            "attention_rollout needs a ViT model (vit or msvit); for CNNs use grad_cam"
        )
    with eval_mode(model), torch.no_grad():
        return torch.stack([_rollout(b, x_in, x.shape[-2:]) for b in branches]).mean(0)


def is_vit(model: nn.Module) -> bool:
    return isinstance(model, VisionTransformer | MultiScaleViT)


def compute_maps(
    model: nn.Module, x: Tensor, cfg: ExplainConfig, target: Tensor | None = None
) -> Tensor:
    """The maps (B, H, W) of `cfg.method` with its settings from `cfg`."""
    if cfg.method == "saliency":
        return saliency(model, x, target, objective=cfg.objective, reduce=cfg.reduce)
    if cfg.method == "smoothgrad":
        return smoothgrad(
            model,
            x,
            target,
            samples=cfg.samples,
            stdev=cfg.stdev,
            objective=cfg.objective,
            reduce=cfg.reduce,
        )
    if cfg.method == "integrated_gradients":
        return integrated_gradients(
            model, x, target, steps=cfg.steps, baseline=cfg.baseline, reduce=cfg.reduce
        )
    if cfg.method == "grad_cam":
        return grad_cam(model, x, target, layer=cfg.layer)
    if cfg.method == "attention_rollout":
        return attention_rollout(model, x, target)
    raise ValueError(f"unknown saliency method {cfg.method!r}")


def method_label(cfg: ExplainConfig) -> str:
    """A folder name that records the method's settings, e.g. `smoothgrad-loss-max-n16-s0.1`,
    and the overlay's where they differ from the course's (`t3`, `per-image`, `heat`)."""
    settings = {
        "saliency": [cfg.objective, cfg.reduce],
        "smoothgrad": [cfg.objective, cfg.reduce, f"n{cfg.samples}", f"s{cfg.stdev:g}"],
        "integrated_gradients": [cfg.reduce, f"steps{cfg.steps}", f"b{cfg.baseline:g}"],
        "grad_cam": [cfg.layer or "last"],
        "attention_rollout": [],
    }[cfg.method]
    if cfg.threshold != ExplainConfig.threshold:  # the red overlay's, where not the course's
        settings.append(f"t{cfg.threshold:g}")
    if cfg.overlay == "heat":
        settings.append("heat")
    elif cfg.per_image:
        settings.append("per-image")
    return "-".join([cfg.method, *settings])
