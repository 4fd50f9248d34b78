"""Convolution by hand: unfold (im2col), matrix multiply, fold (col2im), with its own backward.

The math, for one group (groups split C and O into G independent slices):

    x (B, C, H, W), weight (O, C, kh, kw), output (B, O, Ho, Wo), L = Ho * Wo positions
    cols = unfold(x)                  (B*L, C*kh*kw)   row r = the receptive field of position r
    out  = cols @ W.T + b             (B*L, O)         W = weight flattened to (O, C*kh*kw)
    grad_W    = grad_out.T @ cols     (O, C*kh*kw)     summed over every position of every image
    grad_b    = grad_out.sum(rows)    (O,)
    grad_cols = grad_out @ W          (B*L, C*kh*kw)
    grad_x    = fold(grad_cols)       (B, C, H, W)     each window's gradient added back in place

Three choices make it fast and lean (each measured by `scenelab bench conv`):
- Channels-last rows. With x as (B, H, W, C), a window of channels is contiguous, the unfolded
  matrix is a strided *view* of the padded input (as_strided, no index arithmetic) and the
  product's rows are already the output in (B, Ho, Wo, O) order: no transposes around the GEMM.
- Chunks of images. The batch is processed a few images at a time, so `cols` (kh*kw times the
  input) lives in a small reused buffer that stays in cache instead of a fresh B-sized tensor.
- Recompute, don't save. Backward unfolds x again chunk by chunk instead of keeping `cols` alive
  from forward to backward: memory stays at nn.Conv2d's level (only x and weight are saved).
A pointwise (1x1, stride 1, no padding) convolution skips the unfold: it is a plain matrix
multiply over the channels-last input.
"""

import math
import threading
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair

# Bytes of a chunk's largest buffer (usually the unfolded input): small enough to stay in a CPU
# core's cache, large enough for an efficient GEMM. On CUDA a chunk only bounds memory.
_CHUNK_BYTES = {"cpu": 8 << 20, "cuda": 64 << 20}
_DEFAULT_CHUNK_BYTES = 64 << 20
_workspace = threading.local()  # per-thread scratch buffers, see `_scratch`

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


def _chunk_images(geom: ConvGeometry, x: Tensor) -> int:
    """Images per chunk so that one chunk's largest buffer (the unfolded input, or the output
    rows of a widening 1x1 conv) fits the device's byte budget."""
    width = max(geom.group_width * geom.groups, geom.out_channels)
    row_bytes = geom.positions * width * x.element_size()
    budget = _CHUNK_BYTES.get(x.device.type, _DEFAULT_CHUNK_BYTES)
    return max(1, min(geom.batch, budget // max(row_bytes, 1)))


def _scratch(like: Tensor, shape: tuple[int, ...], slot: str) -> Tensor:
    """A scratch buffer of `shape` that is reused by every call in this thread.

    The chunk buffers are the same few sizes on every call; allocating them afresh each time
    fragments the CPU heap (resident memory grows step after step), so each slot keeps one flat
    tensor per device and dtype and grows it when a larger one is needed. Contents are
    undefined: callers initialise what they read.
    """
    buffers = _workspace.__dict__.setdefault("buffers", {})
    key = (slot, like.device, like.dtype)
    size = math.prod(shape)
    if key not in buffers or buffers[key].numel() < size:
        buffers.pop(key, None)  # free the old one before allocating its successor
        buffers[key] = like.new_empty(size)
    return buffers[key][:size].view(shape)


def _memory_format(x: Tensor) -> torch.memory_format:
    """The layout nn.Conv2d gives its output: channels-last for channels-last inputs."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _rows(t: Tensor) -> Tensor:
    """(b, C, H, W) in any memory format -> its channels-last view (b, H, W, C), no copy."""
    return t.permute(0, 2, 3, 1)


class _Unfolder:
    """Writes chunks of x as `cols` (b*L, G, kh*kw*C/G) into buffers reused across chunks."""

    def __init__(self, x: Tensor, geom: ConvGeometry, chunk: int) -> None:
        self.x, self.geom = x, geom
        self.view_only = geom.pointwise and x.is_contiguous(memory_format=torch.channels_last)
        hp, wp = geom.padded_size
        kh, kw = geom.kernel
        g = geom.groups
        self.padded = None
        if any(geom.pad):  # zeroed once per call: only the interior is ever written
            self.padded = _scratch(x, (chunk, hp, wp, geom.channels), "padded").zero_()
        self.cols = None
        if not self.view_only:
            shape = (chunk, *geom.out_size, g, kh, kw, geom.channels // g)
            self.cols = _scratch(x, shape, "cols")

    def __call__(self, start: int, stop: int) -> Tensor:
        geom, n = self.geom, stop - start
        rows = _rows(self.x[start:stop])  # (n, H, W, C)
        if self.view_only:
            return rows.reshape(n * geom.positions, geom.groups, geom.group_width)
        if self.padded is not None:
            padded = self.padded[:n]
            geom.interior(padded).copy_(rows)
            rows = padded  # (n, Hp, Wp, C)
        (sh, sw), (dh, dw) = geom.stride, geom.dilation
        g, cg = geom.groups, geom.channels // geom.groups
        s_b, s_h, s_w, s_c = rows.stride()
        windows = rows.as_strided(  # (n, Ho, Wo, G, kh, kw, C/G), a view: no copy yet
            (n, *geom.out_size, g, *geom.kernel, cg),
            (s_b, s_h * sh, s_w * sw, s_c * cg, s_h * dh, s_w * dw, s_c),
        )
        cols = self.cols[:n]
        cols.copy_(windows)  # the one copy of im2col, into the cached buffer
        return cols.view(n * geom.positions, g, geom.group_width)


def _grouped_weight(weight: Tensor, geom: ConvGeometry) -> Tensor:
    """(O, C/G, kh, kw) -> (G, O/G, kh*kw*C/G), in the (kh, kw, C) order of the cols rows."""
    g = geom.groups
    w = weight.view(g, geom.out_channels // g, *weight.shape[1:])  # (G, O/G, C/G, kh, kw)
    return w.permute(0, 1, 3, 4, 2).reshape(g, geom.out_channels // g, geom.group_width)


def _ungroup_weight(grad_w: Tensor, geom: ConvGeometry) -> Tensor:
    """The inverse of `_grouped_weight`: (G, O/G, kh*kw*C/G) -> (O, C/G, kh, kw)."""
    kh, kw = geom.kernel
    w = grad_w.view(geom.out_channels, kh, kw, geom.channels // geom.groups)
    return w.permute(0, 3, 1, 2).contiguous()


def _by_group(rows: Tensor) -> Tensor:
    """(b*L, G, k) -> (G, b*L, k), the batched-matmul layout (a view)."""
    return rows.transpose(0, 1)


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
    chunk = _chunk_images(geom, x)
    unfold = _Unfolder(x, geom, chunk)
    w = _grouped_weight(weight, geom).transpose(1, 2)  # (G, kh*kw*C/G, O/G)
    g, og = geom.groups, geom.out_channels // geom.groups
    out = torch.empty(
        (geom.batch, geom.out_channels, *geom.out_size),
        dtype=x.dtype,
        device=x.device,
        memory_format=_memory_format(x),
    )
    direct = out.is_contiguous(memory_format=torch.channels_last)
    buffer = None if direct else _scratch(x, (chunk * geom.positions, g, og), "rows")
    b = bias.view(g, 1, og) if bias is not None else None
    for start in range(0, geom.batch, chunk):
        stop = min(start + chunk, geom.batch)
        n = (stop - start) * geom.positions
        target = _rows(out[start:stop]).view(n, g, og) if direct else buffer[:n]  # (b*L, G, O/G)
        cols = unfold(start, stop)  # (b*L, G, kh*kw*C/G)
        if b is None:
            torch.bmm(_by_group(cols), w, out=_by_group(target))
        else:
            torch.baddbmm(b, _by_group(cols), w, out=_by_group(target))
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
    need_x, need_w, need_b = needs
    chunk = _chunk_images(geom, x)
    g, og, kg = geom.groups, geom.out_channels // geom.groups, geom.group_width
    acc = torch.promote_types(weight.dtype, torch.float32)
    grad_w = weight.new_zeros(g, og, kg, dtype=acc) if need_w else None
    grad_b = weight.new_zeros(geom.out_channels, dtype=acc) if need_b else None
    grad_x = torch.empty_like(x) if need_x else None
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
            grad_b += rows.sum(0, dtype=acc).view(-1)
        if need_w:
            _accumulate(grad_w, _by_group(rows).transpose(1, 2), _by_group(unfold(start, stop)))
        if need_x:
            fold(start, stop, rows, w)
    grad_w = _ungroup_weight(grad_w, geom).to(weight.dtype) if need_w else None
    grad_b = grad_b.to(weight.dtype) if need_b else None
    return grad_x, grad_w, grad_b


def _accumulate(acc: Tensor, a: Tensor, b: Tensor) -> None:
    """acc += a @ b (batched); in place when the dtypes agree, else through a product tensor."""
    if acc.dtype == a.dtype:
        acc.baddbmm_(a, b)
    else:
        acc += torch.bmm(a, b)


class _Folder:
    """Adds chunks of grad_cols back onto grad_x (col2im), through one reused padded buffer."""

    def __init__(self, grad_x: Tensor, geom: ConvGeometry, chunk: int) -> None:
        self.grad_x, self.geom = grad_x, geom
        self.direct = geom.pointwise and grad_x.is_contiguous(memory_format=torch.channels_last)
        kh, kw = geom.kernel
        g = geom.groups
        cg = geom.channels // g
        shape = (chunk, *geom.out_size, g, kh, kw, cg)
        self.cols = None if self.direct else _scratch(grad_x, shape, "cols")  # after unfold's use
        self.padded = None
        if not geom.pointwise:
            self.padded = _scratch(grad_x, (chunk, *geom.padded_size, geom.channels), "fold")

    def __call__(self, start: int, stop: int, grad_rows: Tensor, w: Tensor) -> None:
        geom, n = self.geom, stop - start
        g, cg = geom.groups, geom.channels // geom.groups
        dest = _rows(self.grad_x[start:stop])  # (n, H, W, C)
        if self.direct:
            target = dest.reshape(n * geom.positions, g, geom.group_width)
        else:
            target = self.cols[:n].view(n * geom.positions, g, geom.group_width)
        torch.bmm(_by_group(grad_rows), w, out=_by_group(target))  # grad_cols (b*L, G, k)
        if self.direct:
            return
        if geom.pointwise:
            dest.copy_(target.view(n, *geom.size, -1))
            return
        cols = self.cols[:n]  # (n, Ho, Wo, G, kh, kw, C/G)
        padded = self.padded[:n].zero_()  # (n, Hp, Wp, C)
        taps = padded.view(n, *geom.padded_size, g, cg)
        (sh, sw), (dh, dw) = geom.stride, geom.dilation
        ho, wo = geom.out_size
        for i in range(geom.kernel[0]):
            for j in range(geom.kernel[1]):  # tap (i, j) read x[p*sh + i*dh, q*sw + j*dw]
                rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                columns = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
                taps[:, rows, columns] += cols[:, :, :, :, i, j]
        dest.copy_(geom.interior(padded))


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
