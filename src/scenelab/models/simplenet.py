"""SimpleNet, the course's template CNN (input 3x128x128, ~365k parameters for 100 classes).

7x7/2 conv (3->64), 3x3/2 max pool; 1x1, 3x3, 1x1 convs (64->64->64->256); max pool;
1x1, 3x3, 1x1 convs (256->128->128->512); global average pool; Linear(512->classes).
No BatchNorm, every conv has a bias and a ReLU. `conv_layer` swaps in another Conv2d class
(the hand-written UnfoldConv2d) without changing parameters or state-dict keys.

Initialisation follows torchvision's BN-free VGG (He normal, fan_out, for convs; N(0, 0.01) for
the head; zero biases). With PyTorch's default init, activations shrink through the nine layers
and 100-class training sits on the ln(100) loss plateau for epochs; measured on the real 64 px
sample, the default init had not left it after 3 epochs, this init had.
"""

from torch import Tensor, nn

from .layers import Normalize


def _conv_relu(
    conv_layer: type[nn.Conv2d], cin: int, cout: int, k: int, stride: int = 1
) -> list[nn.Module]:
    return [conv_layer(cin, cout, k, stride=stride, padding=k // 2), nn.ReLU(inplace=True)]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0, 0.01)
        nn.init.zeros_(m.bias)


class SimpleNet(nn.Module):
    def __init__(self, num_classes: int = 100, conv_layer: type[nn.Conv2d] = nn.Conv2d) -> None:
        super().__init__()
        self.normalize = Normalize()
        self.features = nn.Sequential(
            *_conv_relu(conv_layer, 3, 64, 7, stride=2),  # (B, 64, H/2, W/2)
            nn.MaxPool2d(3, stride=2, padding=1),  # (B, 64, H/4, W/4)
            *_conv_relu(conv_layer, 64, 64, 1),
            *_conv_relu(conv_layer, 64, 64, 3),
            *_conv_relu(conv_layer, 64, 256, 1),
            nn.MaxPool2d(3, stride=2, padding=1),  # (B, 256, H/8, W/8)
            *_conv_relu(conv_layer, 256, 128, 1),
            *_conv_relu(conv_layer, 128, 128, 3),
            *_conv_relu(conv_layer, 128, 512, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(512, num_classes)
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        """x: images (B, 3, H, W) in [0, 1] -> logits (B, num_classes)."""
        x = self.features(self.normalize(x))
        return self.head(self.pool(x).flatten(1))
