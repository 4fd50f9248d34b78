"""A small residual CNN with BatchNorm sized for 64-pixel inputs and a few CPU cores.

torchvision's ResNet-18 starts with a 7x7/2 conv and a 3x3/2 max pool, then halves the size
three more times: at 64 px its stages see 16, 8, 4 and 2 pixels, and most of its 11M parameters
and its time go to the last stages, which see almost no spatial detail (3.7 s per batch of 64 on
this 2-core CPU). This network halves the size four times too, but every halving is learned and
it stops at 4x4:

- stem: one 3x3 conv to half the first stage's width, with BatchNorm and ReLU; `stem_stride` 2
  (the default) halves the size (64 -> 32 px), 1 keeps it (4x the FLOPs of the first stage);
- stages of residual blocks (He et al. 2016, BatchNorm after every conv); every stage halves the
  size in its first block: 16, 8 and 4 px with the default three stages at 64 px;
- blocks: `expansion` 1 gives basic blocks (two 3x3 convs), k > 1 bottleneck blocks (1x1
  reduce to width / k, 3x3, 1x1 expand); the shortcut is the identity, or a 1x1 conv with
  BatchNorm (after a 2x2 average pool where the block downsamples) when the shape changes;
- an optional 1x1 conv to `final_width` channels (0: none), global average pooling, Linear.

The defaults (widths 64-128-256, one basic block each, 1.23M parameters, 0.09 GFLOPs at
64 px) train at about 1.2x SimpleNet's images per second on this CPU with channels_last. Every
BatchNorm starts at weight 1: starting each residual branch's last one at 0 (Goyal et al. 2017)
cost 2.6 points of top-1 in a 2-epoch run of an earlier layout of this network (11.8% against
14.4%). `conv_layer` swaps in the hand-written UnfoldConv2d without changing parameters or
state-dict keys.
"""

from torch import Tensor, nn

from .layers import Normalize
from .resnet import ResidualBlock, check_stages, conv_bn


def _residual_branch(
    conv_layer: type[nn.Conv2d], cin: int, cout: int, stride: int, expansion: int
) -> nn.Sequential:
    """Basic (expansion 1: 3x3, 3x3) or bottleneck (1x1, 3x3, 1x1) convs; no final ReLU."""
    if expansion == 1:
        return nn.Sequential(
            *conv_bn(conv_layer, cin, cout, 3, stride),
            nn.ReLU(inplace=True),
            *conv_bn(conv_layer, cout, cout, 3),
        )
    mid = cout // expansion
    return nn.Sequential(
        *conv_bn(conv_layer, cin, mid, 1),
        nn.ReLU(inplace=True),
        *conv_bn(conv_layer, mid, mid, 3, stride),  # torchvision's ResNet v1.5: stride here
        nn.ReLU(inplace=True),
        *conv_bn(conv_layer, mid, cout, 1),
    )


class Block(ResidualBlock):
    """Basic or bottleneck residual block; (B, cin, H, W) -> (B, cout, H/stride, W/stride)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expansion: int = 1,
        conv_layer: type[nn.Conv2d] = nn.Conv2d,
    ) -> None:
        super().__init__()
        self.residual = _residual_branch(conv_layer, in_channels, out_channels, stride, expansion)
        if in_channels == out_channels and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:  # ResNet-D's shortcut: average the pixels instead of dropping three in four
            pool = (  # timm's avg_down: ceil_mode, so odd sizes halve as the strided conv does
                nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)
                if stride > 1
                else nn.Identity()
            )
            self.shortcut = nn.Sequential(pool, *conv_bn(conv_layer, in_channels, out_channels, 1))
        self.relu = nn.ReLU(inplace=True)


class ResNetCPU(nn.Module):
    """Input (B, 3, H, W) in [0, 1] -> logits; H / (stem_stride * 2^stages) before pooling."""

    def __init__(
        self,
        num_classes: int = 100,
        *,
        stage_widths: tuple[int, ...] = (64, 128, 256),
        stage_blocks: tuple[int, ...] = (1, 1, 1),
        final_width: int = 0,
        expansion: int = 1,
        stem_stride: int = 2,
        conv_layer: type[nn.Conv2d] = nn.Conv2d,
    ) -> None:
        super().__init__()
        check_stages(stage_widths, stage_blocks)
        if expansion < 1:
            raise ValueError(f"expansion must be 1 (basic blocks) or more, not {expansion}")
        self.normalize = Normalize()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, not {stem_stride}")
        stem_width = stage_widths[0] // 2
        self.stem = nn.Sequential(  # (B, w/2, H/stem_stride, W/stem_stride)
            *conv_bn(conv_layer, 3, stem_width, 3, stem_stride), nn.ReLU(inplace=True)
        )
        blocks, cin = [], stem_width
        for cout, count in zip(stage_widths, stage_blocks, strict=True):
            for j in range(count):
                stride = 2 if j == 0 else 1
                blocks.append(
                    Block(cin, cout, stride=stride, expansion=expansion, conv_layer=conv_layer)
                )
                cin = cout
        self.stages = nn.Sequential(*blocks)  # (B, stage_widths[-1], H/(s 2^n), W/(s 2^n))
        self.final = (
            nn.Sequential(*conv_bn(conv_layer, cin, final_width, 1), nn.ReLU(inplace=True))
            if final_width
            else nn.Identity()
        )
        self.head = nn.Linear(final_width or cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.final(self.stages(self.stem(self.normalize(x))))
        return self.head(x.mean(dim=(2, 3)))
