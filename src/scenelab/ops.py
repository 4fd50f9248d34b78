"""Convolution by hand: unfold (im2col), matrix multiply, fold (col2im), with its own backward.

The math, for one group (groups split C and O into G independent slices):

    x (B, C, H, W), weight (O, C, kh, kw), output (B, O, Ho, Wo), L = Ho * Wo positions
    cols = unfold(x)                  (B*L, C*kh*kw)   row r = the receptive field of position r
    out  = cols @ W.T + b             (B*L, O)         W = weight flattened to (O, C*kh*kw)
    grad_W    = grad_out.T @ cols     (O, C*kh*kw)     summed over every position of every image
    grad_b    = grad_out.sum(rows)    (O,)
    grad_cols = grad_out @ W          (B*L, C*kh*kw)
    grad_x    = fold(grad_cols)       (B, C, H, W)     each window's gradient added back in place

This module reads top to bottom: geometry (sizes and padding), the pure forward and backward
functions, the autograd Function, the nn.Module. The math above is written in the row layout
(one row of cols per output position), which suits channels-last activations; how it is made
fast and lean (chunks of images in reused buffers, cols recomputed in backward rather than
saved) lives in `_conv_chunks`. NCHW activations take the same math in F.unfold's column
layout (`_conv_columns`), where the product reads and writes them without transposes. It runs
past 300 lines because the hand-written convolution is one concept: its math, forward/backward,
Function and Module must read in this order in one file.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair

from . import _conv_columns
from ._conv_chunks import _CHUNK_BYTES as _CHUNK_BYTES  # re-exported: tests shrink chunks here

# How the math below is made fast and lean: chunking, buffer reuse, channels-last layout.
from ._conv_chunks import (
    _accumulate,
    _by_group,
    _chunk_images,
    _Folder,
    _grouped_weight,
    _memory_format,
    _rows,
    _scratch,
    _Unfolder,
    _ungroup_weight,
)

IntPair = int | tuple[int, int]


@dataclass(frozen=True)
class ConvGeometry:
    """Sizes of one convolution; `pad` is (top, bottom, left, right) so 'same' can be uneven."""

    batch: int
    channels: int  # C, input channels
    out_channels: int  # O
    groups: int  # G
    kernel: tuple[int, int]  # (kh, kw)
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pad: tuple[int, int, int, int]
    size: tuple[int, int]  # (H, W) of the input
    out_size: tuple[int, int]  # (Ho, Wo)

    @property
    def padded_size(self) -> tuple[int, int]:
        top, bottom, left, right = self.pad
        return self.size[0] + top + bottom, self.size[1] + left + right

    @property
    def positions(self) -> int:  # L, output positions per image
        return self.out_size[0] * self.out_size[1]

    @property
    def group_width(self) -> int:  # kh*kw*C/G, one group's row length in cols
        return self.kernel[0] * self.kernel[1] * self.channels // self.groups

    def interior(self, padded: Tensor) -> Tensor:
        """(n, Hp, Wp, C) padded rows -> the (n, H, W, C) view of the unpadded input."""
        top, _, left, _ = self.pad
        return padded[:, top : top + self.size[0], left : left + self.size[1]]

    @property
    def pointwise(self) -> bool:  # 1x1, stride 1, no padding: cols is the input itself
        return self.kernel == (1, 1) and self.stride == (1, 1) and not any(self.pad)


def conv_geometry(
    x: Tensor,
    weight: Tensor,
    stride: IntPair,
    padding: IntPair | str,
    dilation: IntPair,
    groups: int,
) -> ConvGeometry:
    """Check x and weight against each other as F.conv2d does and work out every size."""
    if x.dim() != 4:
        raise ValueError(f"expected a 4-D input (B, C, H, W), got shape {tuple(x.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"expected a 4-D weight (O, C/groups, kh, kw), got {tuple(weight.shape)}")
    batch, channels, height, width = x.shape
    out_channels, group_channels, kh, kw = weight.shape
    if groups < 1 or channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide both in_channels ({channels}) and out_channels "
            f"({out_channels})"
        )
    if group_channels * groups != channels:
        raise ValueError(
            f"input has {channels} channels but the weight expects {group_channels * groups} "
            f"({group_channels} per group x {groups} groups)"
        )
    if x.dtype != weight.dtype or x.device != weight.device:
        raise ValueError(
            f"input ({x.dtype}, {x.device}) and weight ({weight.dtype}, {weight.device}) must "
            "share dtype and device"
        )
    stride, dilation = _pair(stride), _pair(dilation)
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"stride {stride} and dilation {dilation} must be positive")
    pad = _resolve_padding(padding, (kh, kw), stride, dilation)
    out_size = tuple(
        (n + before + after - d * (k - 1) - 1) // s + 1
        for n, before, after, k, s, d in zip(
            (height, width), pad[0::2], pad[1::2], (kh, kw), stride, dilation, strict=True
        )
    )
    if min(out_size) < 1:
        raise ValueError(
            f"input of size {height}x{width} (padded by {pad}) is smaller than the "
            f"{kh}x{kw} kernel with dilation {dilation}"
        )
    return ConvGeometry(
        batch=batch,
        channels=channels,
        out_channels=out_channels,
        groups=groups,
        kernel=(kh, kw),
        stride=stride,
        dilation=dilation,
        pad=pad,
        size=(height, width),
        out_size=out_size,
    )


def _resolve_padding(
    padding: IntPair | str,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        pad: list[int] = []
        for k, d in zip(kernel, dilation, strict=True):
            total = d * (k - 1)  # as F.conv2d: the extra pixel of an even kernel goes after
            pad += [total // 2, total - total // 2]
        return tuple(pad)
    if isinstance(padding, str):
        raise ValueError(f"padding must be 'valid', 'same' or integers, got {padding!r}")
    ph, pw = _pair(padding)
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be non-negative, got {(ph, pw)}")
    return (ph, ph, pw, pw)


def conv2d_unfold_forward(
    x: Tensor, weight: Tensor, bias: Tensor | None, geom: ConvGeometry
) -> Tensor:
    """out = unfold(x) @ W.T + b, chunk by chunk.

    Args:
        x: (B, C, H, W), any memory format.
        weight: (O, C/G, kh, kw); bias: (O,) or None.
    Returns:
        (B, O, Ho, Wo), a fresh tensor in x's memory format (never a view).
    """
    if _conv_columns.uses_columns(geom, x):  # NCHW: the same product in F.unfold's layout
        return _conv_columns.columns_forward(x, weight, bias, geom)
    chunk = _chunk_images(geom, x)
    unfold = _Unfolder(x, geom, chunk)
    w = _grouped_weight(weight, geom).transpose(1, 2)  # (G, kh*kw*C/G, O/G)
    g, og = geom.groups, geom.out_channels // geom.groups
    out = torch.empty(  # (B, O, Ho, Wo), in x's layout
        (geom.batch, geom.out_channels, *geom.out_size),
        dtype=x.dtype,
        device=x.device,
        memory_format=_memory_format(x),
    )
    direct = out.is_contiguous(memory_format=torch.channels_last)
    buffer = None if direct else _scratch(x, (chunk * geom.positions, g, og), "rows")
    b = bias.view(g, 1, og) if bias is not None else None  # (G, 1, O/G): added to every row
    for start in range(0, geom.batch, chunk):
        stop = min(start + chunk, geom.batch)
        n = (stop - start) * geom.positions
        target = _rows(out[start:stop]).view(n, g, og) if direct else buffer[:n]  # (b*L, G, O/G)
        cols = unfold(start, stop)  # (b*L, G, kh*kw*C/G)
        if b is None:
            torch.bmm(_by_group(cols), w, out=_by_group(target))  # out = cols @ W.T
        else:
            torch.baddbmm(b, _by_group(cols), w, out=_by_group(target))  # cols @ W.T + b
        if not direct:
            _rows(out[start:stop]).copy_(target.view(stop - start, *geom.out_size, -1))
    return out


def conv2d_unfold_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    geom: ConvGeometry,
    needs: tuple[bool, bool, bool] = (True, True, True),
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients for (x, weight, bias); those not in `needs` are skipped and returned as None.

    grad_W = sum over chunks of grad_out.T @ cols (cols unfolded again, not saved);
    grad_b = grad_out summed over every row; grad_x = fold(grad_out @ W): each of the kh*kw
    kernel taps adds its slice of grad_cols onto the (strided) input pixels it read.
    Weight and bias gradients accumulate in float32 at least, so bfloat16 loses nothing to
    summing many chunks.
    """
    if _conv_columns.uses_columns(geom, x):
        return _conv_columns.columns_backward(grad_out, x, weight, geom, needs)
    need_x, need_w, need_b = needs
    chunk = _chunk_images(geom, x)
    g, og, kg = geom.groups, geom.out_channels // geom.groups, geom.group_width
    acc = torch.promote_types(weight.dtype, torch.float32)
    grad_w = weight.new_zeros(g, og, kg, dtype=acc) if need_w else None  # (G, O/G, kh*kw*C/G)
    grad_b = weight.new_zeros(geom.out_channels, dtype=acc) if need_b else None  # (O,)
    grad_x = torch.empty_like(x) if need_x else None  # (B, C, H, W), every pixel written by fold
    unfold = _Unfolder(x, geom, chunk) if need_w else None
    fold = _Folder(grad_x, geom, chunk) if need_x else None
    w = _grouped_weight(weight, geom)  # (G, O/G, kh*kw*C/G)
    g_direct = grad_out.is_contiguous(memory_format=torch.channels_last)
    g_shape = (chunk, *geom.out_size, geom.out_channels)
    g_buffer = None if g_direct else _scratch(grad_out, g_shape, "rows")
    for start in range(0, geom.batch, chunk):
        stop = min(start + chunk, geom.batch)
        n = (stop - start) * geom.positions
        rows = _rows(grad_out[start:stop])  # (b, Ho, Wo, O)
        if not g_direct:
            rows = g_buffer[: stop - start].copy_(rows)
        rows = rows.reshape(n, g, og)  # (b*L, G, O/G)
        if need_b:
            grad_b += rows.sum(0, dtype=acc).view(-1)  # grad_b = grad_out.sum(rows)
        if need_w:  # grad_W += grad_out.T @ cols: (G, O/G, b*L) @ (G, b*L, kh*kw*C/G)
            _accumulate(grad_w, _by_group(rows).transpose(1, 2), _by_group(unfold(start, stop)))
        if need_x:
            fold(start, stop, rows, w)  # grad_x = fold(grad_out @ W), this chunk's images
    grad_w = _ungroup_weight(grad_w, geom).to(weight.dtype) if need_w else None  # (O, C/G, kh, kw)
    grad_b = grad_b.to(weight.dtype) if need_b else None
    return grad_x, grad_w, grad_b


class Conv2dUnfoldFn(torch.autograd.Function):
    """Autograd wrapper: saves only x and weight (cols are recomputed in backward)."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        stride: IntPair,
        padding: IntPair | str,
        dilation: IntPair,
        groups: int,
    ) -> Tensor:
        geom = conv_geometry(x, weight, stride, padding, dilation, groups)
        ctx.geom = geom
        ctx.save_for_backward(x, weight)
        return conv2d_unfold_forward(x, weight, bias, geom)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, weight = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:3])
        grads = conv2d_unfold_backward(grad_out, x, weight, ctx.geom, needs)
        return (*grads, None, None, None, None)


def conv2d_unfold(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Tensor:
    """Drop-in for F.conv2d (zero padding), computed by unfold + matmul + fold.

    x: (B, C, H, W) or unbatched (C, H, W); returns (B, O, Ho, Wo) in x's memory format.
    """
    if x.dim() == 3:
        return conv2d_unfold(x[None], weight, bias, stride, padding, dilation, groups)[0]
    return Conv2dUnfoldFn.apply(x, weight, bias, stride, padding, dilation, groups)


class UnfoldConv2d(nn.Conv2d):
    """nn.Conv2d computed by `conv2d_unfold`: same parameters, init, repr and state dict.

    Weights load in both directions (`UnfoldConv2d.load_state_dict(conv.state_dict())`).
    Only zero padding is implemented; other padding modes and complex dtypes are refused.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(
                f"UnfoldConv2d supports only padding_mode='zeros', got {self.padding_mode!r}; "
                "use nn.Conv2d (--conv native) for other padding modes"
            )
        if self.weight.is_complex():
            raise ValueError("UnfoldConv2d does not support complex weights; use nn.Conv2d")

    def forward(self, x: Tensor) -> Tensor:
        return conv2d_unfold(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
