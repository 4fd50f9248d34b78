"""`eval_mode`: run a model in eval mode for a block, then give every submodule its mode back.

Evaluation, attacks, saliency, attention maps and FLOP counts all borrow a model that may be
training; this is the one place that saves and restores its modes (robustness's lesson: an
attack that leaves BatchNorm in train mode silently changes the model it attacks).
"""

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode, then give every submodule its own previous mode back."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
