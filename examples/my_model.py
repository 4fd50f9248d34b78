"""Your own network in scenelab: any nn.Module whose constructor takes num_classes."""

from torch import nn

import scenelab
from scenelab.models import Normalize


class TinyNet(nn.Module):
    """Two convolutions and a linear head: `--model my_model:TinyNet`."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            Normalize(),  # scenelab feeds images in [0, 1]; the model normalises them
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, num_classes),
        )

    def forward(self, x):
        return self.net(x)


@scenelab.register_model
def tinynet_wide(num_classes: int) -> nn.Module:
    """TinyNet with 64 channels: `--model tinynet_wide` once this file is imported."""
    return TinyNet(num_classes, width=64)
