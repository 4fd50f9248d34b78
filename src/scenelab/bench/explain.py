"""`scenelab bench explain`: each saliency method against captum's, same model and batch.

Both compute the same maps (the logit objective, as captum does; tests check they agree), so
the ratio is the cost of the implementation alone. captum is the reference, installed with the
test extra (`pip install -e '.[test]'`); it is not a runtime dependency.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..analysis_config import ExplainConfig
from ..document import format_table
from ..explain import compute_maps, default_cam_layer, is_vit
from ..explain_score import applicable_methods
from .config import ExplainBenchConfig
from .harness import model_and_images, paired_ms, ratio


@dataclass(frozen=True)
class MethodTiming:
    method: str
    ours_ms: float
    captum_ms: float


def _captum_method(model: nn.Module, x: Tensor, cfg: ExplainBenchConfig, method: str) -> Callable:
    try:
        import captum.attr as ca
    except ImportError:
        raise ValueError(
            "scenelab bench explain compares with captum, which is not installed: "
            "pip install -e '.[test]' (or pip install captum)"
        ) from None
    if method == "saliency":
        return lambda t: ca.Saliency(model).attribute(x, target=t).amax(1)
    if method == "smoothgrad":
        tunnel = ca.NoiseTunnel(ca.Saliency(model))
        return lambda t: tunnel.attribute(
            x, nt_type="smoothgrad", nt_samples=cfg.samples, stdevs=0.1, target=t
        ).amax(1)
    if method == "integrated_gradients":
        ig = ca.IntegratedGradients(model)
        return lambda t: ig.attribute(x, baselines=0.0, target=t, n_steps=cfg.steps).abs().amax(1)
    if method == "grad_cam":
        cam = ca.LayerGradCam(model, model.get_submodule(default_cam_layer(model, x)))
        return lambda t: F.interpolate(
            cam.attribute(x, target=t, relu_attributions=True), x.shape[-2:], mode="bilinear"
        ).squeeze(1)
    raise ValueError(f"captum has no counterpart of {method}")


def method_times(cfg: ExplainBenchConfig, device: torch.device) -> list[MethodTiming]:
    model, x, target = model_and_images(
        cfg.model, cfg.num_classes, cfg.image_size, cfg.batch_size, device
    )
    timings = []
    for method in applicable_methods(model):
        if is_vit(model) and method == "attention_rollout":
            continue  # captum has no attention rollout
        layer = default_cam_layer(model, x) if method == "grad_cam" else None  # found once
        ecfg = ExplainConfig(
            method=method, objective="logit", samples=cfg.samples, steps=cfg.steps, layer=layer
        )
        ours, theirs = paired_ms(
            lambda t, e=ecfg: compute_maps(model, x, e, t),
            _captum_method(model, x, cfg, method),
            target,
            cfg.repeats,
            device,
        )
        timings.append(MethodTiming(method, ours, theirs))
    return timings


def table(timings: list[MethodTiming]) -> str:
    rows = [
        [t.method, f"{t.ours_ms:.1f}", f"{t.captum_ms:.1f}", ratio(t.ours_ms, t.captum_ms)]
        for t in timings
    ]
    return format_table(["method", "scenelab ms", "captum ms", "scenelab/captum"], rows)
