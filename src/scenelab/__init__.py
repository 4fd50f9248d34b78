"""scenelab: train scene-recognition CNNs and ViTs, then explain and attack them.

The public API, re-exported here; the command line (`scenelab ...`) is built on it.
"""

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

__all__ = [
    "write_report",
    "MODELS",
    "AdvConfig",
    "AdversarialObjective",
    "AttackConfig",
    "CrossEntropy",
    "DataConfig",
    "EpochLog",
    "ExplainConfig",
    "Loaders",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "UnfoldConv2d",
    "attention_rollout",
    "build_dataset",
    "build_datasets",
    "build_loader",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "compute_maps",
    "conv2d_unfold",
    "count_flops",
    "count_parameters",
    "course_units",
    "evaluate",
    "evaluate_attack",
    "export_model",
    "fgsm",
    "fit",
    "grad_cam",
    "heat_overlay",
    "integrated_gradients",
    "least_likely_target",
    "load_checkpoint",
    "load_run",
    "load_pretrained",
    "mask_energy",
    "pgd",
    "pointing_game",
    "predict",
    "random_target",
    "red_overlay",
    "register_model",
    "robust_accuracy",
    "saliency",
    "save_checkpoint",
    "score_methods",
    "smoothgrad",
    "train_one_epoch",
]
