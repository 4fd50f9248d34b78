"""Multi-scale ViT: one ViT branch per patch size, their pooled features fused in one head.

The course report's design: fine patches (4 px) see texture, coarse ones (16 px) layout. Each
branch is a `VisionTransformer` without input normalisation or head (own patch embedding,
optional position table, block stack), with the window scaled to its grid so that every branch's
windows cover the same share of the image. The pooled, LayerNormed features of the branches
are concatenated into one Linear head.
"""

import torch
from torch import Tensor, nn

from .layers import Normalize
from .vit import VisionTransformer


class MultiScaleViT(nn.Module):
    """Input (B, 3, H, W) in [0, 1] -> logits. `window_size` is for the largest patch size."""

    def __init__(
        self,
        num_classes: int = 100,
        *,
        img_size: int = 128,
        patch_sizes: tuple[int, ...] = (4, 8, 16),
        embed_dim: int = 96,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        window_size: int = 4,
        window_block_indexes: tuple[int, ...] = (1, 3),
        drop_path_rate: float = 0.1,
        head_norm: bool = True,
        pos_embed: bool = True,
    ) -> None:
        super().__init__()
        coarsest = max(patch_sizes)
        if any(coarsest % p for p in patch_sizes):
            raise ValueError(f"patch_sizes {patch_sizes} must each divide the largest one")
        self.normalize = Normalize()
        self.branches = nn.ModuleList(
            VisionTransformer(
                0,
                img_size=img_size,
                patch_size=p,
                embed_dim=embed_dim,
                depth=depth,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                window_size=window_size * coarsest // p,
                window_block_indexes=window_block_indexes,
                drop_path_rate=drop_path_rate,
                head_norm=head_norm,
                pos_embed=pos_embed,
                pixel_norm=False,
            )
            for p in patch_sizes
        )
        self.head = nn.Linear(embed_dim * len(patch_sizes), num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def no_weight_decay(self) -> set[str]:
        return {
            f"branches.{i}.{n}" for i, b in enumerate(self.branches) for n in b.no_weight_decay()
        }

    def forward(self, x: Tensor) -> Tensor:
        x = self.normalize(x)
        return self.head(torch.cat([branch.forward_features(x) for branch in self.branches], 1))
