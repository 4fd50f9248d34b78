"""scenelab: train scene-recognition CNNs and ViTs, then explain and attack them.

The public API, re-exported here; the command line (`scenelab ...`) is built on it.
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from .data import build_dataset, build_datasets, build_loader
from .models import MODELS, build_model, count_flops, count_parameters, load_pretrained
from .ops import UnfoldConv2d, conv2d_unfold
from .train import build_optimizer, build_scheduler, evaluate, fit, train_one_epoch

__all__ = [
    "MODELS",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "UnfoldConv2d",
    "build_dataset",
    "build_datasets",
    "build_loader",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "count_flops",
    "count_parameters",
    "conv2d_unfold",
    "evaluate",
    "fit",
    "load_pretrained",
    "load_checkpoint",
    "save_checkpoint",
    "train_one_epoch",
]
