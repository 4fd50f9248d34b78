"""The machinery behind `ops.conv2d_unfold`: how it is fast and lean, not what it computes.

`ops` holds the math (cols = unfold(x), out = cols @ W.T + b, and its backward); this module
holds the layout, chunking and buffer reuse it runs on. Three choices, each measured by
`scenelab bench conv`:
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

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # ops imports this module, so the geometry is imported for type hints only
    from .ops import ConvGeometry

# Bytes of a chunk's largest buffer (usually the unfolded input): small enough to stay in a CPU
# core's cache, large enough for an efficient GEMM. On CUDA a chunk only bounds memory.
_CHUNK_BYTES = {"cpu": 8 << 20, "cuda": 64 << 20}
_DEFAULT_CHUNK_BYTES = 64 << 20
_workspace = threading.local()  # per-thread scratch buffers, see `_scratch`


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
    undefined: callers initialise what they read. A buffer first needed under inference_mode
    (an evaluation batch larger than the training one) is still made a normal tensor, so that
    the next training step may write to it.
    """
    buffers = _workspace.__dict__.setdefault("buffers", {})
    key = (slot, like.device, like.dtype)
    size = math.prod(shape)
    if key not in buffers or buffers[key].numel() < size:
        buffers.pop(key, None)  # free the old one before allocating its successor
        with torch.inference_mode(False):
            buffers[key] = torch.empty(size, dtype=like.dtype, device=like.device)
    return buffers[key][:size].view(shape)


def _memory_format(x: Tensor) -> torch.memory_format:
    """The layout nn.Conv2d gives its output: channels-last for channels-last inputs."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _rows(t: Tensor) -> Tensor:
    """(b, C, H, W) in any memory format -> its channels-last view (b, H, W, C), no copy."""
    return t.permute(0, 2, 3, 1)


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


def _accumulate(acc: Tensor, a: Tensor, b: Tensor) -> None:
    """acc += a @ b (batched); in place when the dtypes agree, else through a product tensor."""
    if acc.dtype == a.dtype:
        acc.baddbmm_(a, b)
    else:
        acc += torch.bmm(a, b)


def _taps(geom: ConvGeometry) -> Iterator[tuple[int, int, slice, slice]]:
    """Each kernel tap (i, j) with the rows and columns of the padded input it reads: tap
    (i, j) of output position (p, q) reads x[p*sh + i*dh, q*sw + j*dw]. Fold adds each tap's
    slice of grad_cols back onto those pixels."""
    (sh, sw), (dh, dw) = geom.stride, geom.dilation
    ho, wo = geom.out_size
    for i in range(geom.kernel[0]):
        for j in range(geom.kernel[1]):
            rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            yield i, j, rows, slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)


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
        for i, j, rows, columns in _taps(geom):
            taps[:, rows, columns] += cols[:, :, :, :, i, j]
        dest.copy_(geom.interior(padded))
