"""The course's plain vision transformer in the ViTDet/SAM style (Li et al. 2022).

Tokens live on a (B, H, W, D) grid from a strided-conv patch embedding, plus a learned absolute
position table. Each pre-norm block attends either globally or inside non-overlapping windows
(the grid is zero-padded to a multiple of the window; SAM does not mask the padding either), as
`window_block_indexes` says. No class token: the head is mean pooling over tokens, LayerNorm
(`head_norm`; the course found top-1 stuck under 20% without it), then Linear. Attention uses
F.scaled_dot_product_attention; `fused=False` switches to the manual softmax(q k^T / sqrt(d)) v,
whose weights `attention_maps` returns for visualisation.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..modes import eval_mode
from .layers import DropPath, Mlp, Normalize, PatchEmbed


def window_partition(x: Tensor, window_size: int) -> tuple[Tensor, tuple[int, int]]:
    """Split a token grid into non-overlapping windows, zero-padding it to a multiple first.

    Args:
        x: tokens (B, H, W, C).
    Returns:
        windows (B * nH * nW, ws, ws, C), in row-major window order per image, and the padded
        grid size (Hp, Wp), where nH = Hp / ws and nW = Wp / ws.
    """
    B, H, W, C = x.shape
    pad_h, pad_w = (-H) % window_size, (-W) % window_size
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # pads W then H at the end; C untouched
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window_size, window_size, Wp // window_size, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, C)
    return windows, (Hp, Wp)


def window_unpartition(
    windows: Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> Tensor:
    """Inverse of `window_partition`: (B * nH * nW, ws, ws, C) -> (B, H, W, C), padding removed."""
    (Hp, Wp), (H, W) = pad_hw, hw
    B = windows.shape[0] // (Hp * Wp // window_size // window_size)
    x = windows.view(B, Hp // window_size, Wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    return x[:, :H, :W, :].contiguous()


class Attention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) grid (one window or the whole image)."""

    def __init__(self, dim: int, num_heads: int = 4, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.fused = True  # F.scaled_dot_product_attention; False: the manual path
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, H, W, C = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, N, C/h)
        return q, k, v

    def _probs(self, q: Tensor, k: Tensor) -> Tensor:
        return ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, h, N, N)

    def weights(self, x: Tensor) -> Tensor:
        """Attention probabilities (B, h, N, N) of the manual path; each row sums to 1."""
        q, k, _ = self._qkv(x)
        return self._probs(q, k)

    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape
        q, k, v = self._qkv(x)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            x = self._probs(q, k) @ v
        x = x.transpose(1, 2).reshape(B, H, W, C)  # (B, h, N, C/h) -> (B, H, W, C)
        return self.proj(x)


class Block(nn.Module):
    """Pre-norm transformer block; `window_size=0` means global attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[1:3]
        y = self.norm1(x)
        if self.window_size > 0:
            y, pad_hw = window_partition(y, self.window_size)
        y = self.attn(y)
        if self.window_size > 0:
            y = window_unpartition(y, self.window_size, pad_hw, (H, W))
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def attention_weights(self, x: Tensor) -> Tensor:
        """This block's attention over the grid (B, h, N, N), N = H * W, row-major tokens.

        A windowed block attends within windows only: the weight between tokens of different
        windows is zero (the matrix is block-diagonal in window order). Attention to padding
        tokens is dropped, so on a padded grid those rows sum to less than 1.
        """
        B, H, W, _ = x.shape
        y = self.norm1(x)
        if self.window_size == 0:
            return self.attn.weights(y)
        ws = self.window_size
        windows, (Hp, Wp) = window_partition(y, ws)
        local = self.attn.weights(windows)  # (B * nWin, h, ws*ws, ws*ws)
        # Token indices of each window on the padded grid, in the order window_partition uses.
        index = torch.arange(Hp * Wp, device=x.device).view(1, Hp, Wp, 1)
        index = window_partition(index, ws)[0].view(-1, ws * ws)  # (nWin, ws*ws)
        local = local.view(B, len(index), *local.shape[1:]).transpose(1, 2)  # (B, h, nWin, M, M)
        full = local.new_zeros(B, local.shape[1], Hp * Wp, Hp * Wp)
        full[:, :, index[:, :, None], index[:, None, :]] = local
        real = torch.arange(Hp * Wp, device=x.device).view(Hp, Wp)[:H, :W].flatten()
        return full[:, :, real][:, :, :, real]


class VisionTransformer(nn.Module):
    """ViTDet-style classifier; see the module docstring. Input (B, 3, H, W) in [0, 1].

    The position table is learned for `img_size`; other input sizes use a bicubic resize of it.
    `num_classes=0` drops the Linear head (the pooled, normalised features come out), and
    `pixel_norm=False` drops the input normalisation: the multi-scale ViT uses both.
    """

    def __init__(
        self,
        num_classes: int = 100,
        *,
        img_size: int = 128,
        patch_size: int = 16,
        embed_dim: int = 192,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        window_size: int = 4,
        window_block_indexes: tuple[int, ...] = (1, 3),
        drop_path_rate: float = 0.1,
        head_norm: bool = True,
        pos_embed: bool = True,
        pixel_norm: bool = True,
    ) -> None:
        super().__init__()
        if any(not 0 <= i < depth for i in window_block_indexes):
            raise ValueError(
                f"window_block_indexes {window_block_indexes} must lie in [0, {depth}), the "
                f"blocks of depth {depth}; set --window-block-indexes too"
            )
        grid = img_size // patch_size
        self.normalize = Normalize() if pixel_norm else nn.Identity()
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim)) if pos_embed else None
        rates = torch.linspace(0, drop_path_rate, depth).tolist()  # stochastic depth per block
        windows = [window_size if i in window_block_indexes else 0 for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, rates[i], windows[i]) for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim) if head_norm else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()
        self.num_features = embed_dim
        self.apply(_init_weights)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"} if self.pos_embed is not None else set()

    def tokens(self, x: Tensor) -> Tensor:
        """Normalised images (B, 3, H, W) -> position-embedded tokens (B, H/p, W/p, D)."""
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + _resize_pos_embed(self.pos_embed, x.shape[1:3])
        return x

    def forward_features(self, x: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [0, 1] -> pooled, normalised features (B, D)."""
        x = self.tokens(self.normalize(x))
        for block in self.blocks:
            x = block(x)
        return self.norm(x.mean(dim=(1, 2)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))

    @torch.no_grad()
    def attention_maps(self, x: Tensor) -> list[Tensor]:
        """Each block's attention (B, h, N, N) over the token grid for images in [0, 1], in eval
        mode (no stochastic depth); every submodule gets its own mode back."""
        with eval_mode(self):
            maps, x = [], self.tokens(self.normalize(x))
            for block in self.blocks:
                maps.append(block.attention_weights(x))
                x = block(x)
        return maps


def _resize_pos_embed(pos_embed: Tensor, hw: tuple[int, int]) -> Tensor:
    """(1, H, W, D) table -> (1, h, w, D), bicubic like SAM's get_abs_pos; as is when equal."""
    if tuple(pos_embed.shape[1:3]) == tuple(hw):
        return pos_embed
    resized = F.interpolate(pos_embed.permute(0, 3, 1, 2), size=hw, mode="bicubic")
    return resized.permute(0, 2, 3, 1)


def _init_weights(m: nn.Module) -> None:
    """timm's ViT init: truncated normal (std 0.02) Linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
