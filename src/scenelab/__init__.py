"""scenelab: train scene-recognition CNNs and ViTs, then explain and attack them.

The public API, re-exported here; the command line (`scenelab ...`) is built on it. The names
are imported on first use (PEP 562), so `import scenelab` and the command line's help stay fast:
torch loads when the first of them is used.
"""

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_EXPORTS = {
    "AdvConfig": "scenelab.config",
    "AdversarialObjective": "scenelab.adversarial",
    "AttackConfig": "scenelab.analysis_config",
    "attention_rollout": "scenelab.explain",
    "build_dataset": "scenelab.data",
    "build_datasets": "scenelab.data",
    "build_loader": "scenelab.data",
    "build_model": "scenelab.models",
    "build_optimizer": "scenelab.optim",
    "build_scheduler": "scenelab.optim",
    "compute_maps": "scenelab.explain",
    "conv2d_unfold": "scenelab.ops",
    "count_flops": "scenelab.models",
    "count_parameters": "scenelab.models",
    "course_units": "scenelab.attack",
    "CrossEntropy": "scenelab.adversarial",
    "DataConfig": "scenelab.config",
    "EpochLog": "scenelab.tracking",
    "evaluate": "scenelab.evaluation",
    "evaluate_attack": "scenelab.attack_eval",
    "ExplainConfig": "scenelab.analysis_config",
    "export_model": "scenelab.export",
    "fgsm": "scenelab.attack",
    "fit": "scenelab.train",
    "grad_cam": "scenelab.explain",
    "heat_overlay": "scenelab.overlays",
    "integrated_gradients": "scenelab.explain",
    "least_likely_target": "scenelab.attack",
    "load_checkpoint": "scenelab.checkpoint",
    "load_pretrained": "scenelab.models",
    "load_run": "scenelab.inference",
    "Loaders": "scenelab.data",
    "mask_energy": "scenelab.metrics",
    "ModelConfig": "scenelab.config",
    "MODELS": "scenelab.models",
    "OptimConfig": "scenelab.config",
    "pgd": "scenelab.attack",
    "pointing_game": "scenelab.metrics",
    "predict": "scenelab.inference",
    "random_target": "scenelab.attack",
    "red_overlay": "scenelab.overlays",
    "register_model": "scenelab.models",
    "robust_accuracy": "scenelab.evaluation",
    "RunConfig": "scenelab.config",
    "saliency": "scenelab.explain",
    "save_checkpoint": "scenelab.checkpoint",
    "score_methods": "scenelab.explain_score",
    "smoothgrad": "scenelab.explain",
    "train_one_epoch": "scenelab.train",
    "TrainConfig": "scenelab.config",
    "UnfoldConv2d": "scenelab.ops",
    "write_report": "scenelab.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scenelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what static analysers and IDEs see
    from .adversarial import AdversarialObjective, CrossEntropy
    from .analysis_config import AttackConfig, ExplainConfig
    from .attack import (
        course_units,
        fgsm,
        least_likely_target,
        pgd,
        random_target,
    )
    from .attack_eval import evaluate_attack
    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import AdvConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from .data import Loaders, build_dataset, build_datasets, build_loader
    from .evaluation import evaluate, robust_accuracy
    from .explain import (
        attention_rollout,
        compute_maps,
        grad_cam,
        integrated_gradients,
        saliency,
        smoothgrad,
    )
    from .explain_score import score_methods
    from .export import export_model
    from .inference import load_run, predict
    from .metrics import mask_energy, pointing_game
    from .models import (
        MODELS,
        build_model,
        count_flops,
        count_parameters,
        load_pretrained,
        register_model,
    )
    from .ops import UnfoldConv2d, conv2d_unfold
    from .optim import build_optimizer, build_scheduler
    from .overlays import heat_overlay, red_overlay
    from .report import write_report
    from .tracking import EpochLog
    from .train import fit, train_one_epoch
