"""The hand-written convolution in F.unfold's column layout, for NCHW activations.

Per image, cols is (G, C/G*kh*kw, L): column l holds the receptive field of output position l,
exactly what F.unfold returns. Then the product reads and writes NCHW tensors in place:

    out_b    = W @ cols_b             (O, L) = (O, Ho, Wo), the output image itself
    grad_W  += grad_out_b @ cols_b.T  grad_out_b read as (O, L), no copy
    grad_cols_b = W.T @ grad_out_b    then folded onto grad_x_b, as in the row layout

The row layout of `_conv_chunks` needs channels-last activations; for NCHW ones it transposes the
input and the output on the way in and out, which costs more than the product for a pointwise
conv or a stem with three input channels. A pointwise conv needs no unfold at all here: cols_b is
x_b viewed as (C, H*W). `ops` picks the layout (`uses_columns`); chunking, scratch buffers and
recomputing cols in backward are the row layout's (see `_conv_chunks`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ._conv_chunks import _accumulate, _chunk_images, _scratch, _taps

if TYPE_CHECKING:  # ops imports this module, so the geometry is imported for type hints only
    from .ops import ConvGeometry

# One GEMM per image is (O, K) @ (K, L): below this many output positions L it is too narrow to
# run at full speed and the row layout's single (B*L, K) @ (K, O) product wins even with its
# transposes (`scenelab bench conv`: SimpleNet's 3x3 conv on 8x8 maps).
MIN_COLUMN_POSITIONS = 256


def uses_columns(geom: ConvGeometry, x: Tensor) -> bool:
    """Column layout for NCHW-contiguous x: always for a pointwise conv, otherwise when each
    image has at least MIN_COLUMN_POSITIONS output positions."""
    return x.is_contiguous() and (geom.pointwise or geom.positions >= MIN_COLUMN_POSITIONS)


def _padded_interior(padded: Tensor, geom: ConvGeometry) -> Tensor:
    """(n, C, Hp, Wp) padded images -> the (n, C, H, W) view of the unpadded input."""
    top, _, left, _ = geom.pad
    return padded[:, :, top : top + geom.size[0], left : left + geom.size[1]]


def _column_shape(geom: ConvGeometry, n: int) -> tuple[int, ...]:
    return (n, geom.channels, *geom.kernel, *geom.out_size)  # (n, C, kh, kw, Ho, Wo)


class ColumnUnfolder:
    """Writes chunks of NCHW x as cols into a buffer reused across chunks: per image
    (n, G, C/G*kh*kw, L), or with `images_inner` as one matrix (G, C/G*kh*kw, n*L) whose columns
    run over the chunk's images, so that backward sums grad_W over the chunk in one product."""

    def __init__(self, x: Tensor, geom: ConvGeometry, chunk: int, images_inner: bool = False):
        self.x, self.geom, self.images_inner = x, geom, images_inner
        self.padded = None
        if any(geom.pad):  # zeroed once per call: only the interior is ever written
            shape = (chunk, geom.channels, *geom.padded_size)
            self.padded = _scratch(x, shape, "padded").zero_()

    def __call__(self, start: int, stop: int) -> Tensor:
        geom, n = self.geom, stop - start
        images = self.x[start:stop]  # (n, C, H, W)
        if geom.pointwise and not self.images_inner:  # cols is the input itself
            return images.view(n, geom.groups, geom.group_width, geom.positions)
        if self.padded is not None:
            _padded_interior(self.padded[:n], geom).copy_(images)
            images = self.padded[:n]  # (n, C, Hp, Wp)
        (sh, sw), (dh, dw) = geom.stride, geom.dilation
        s_b, s_c, s_h, s_w = images.stride()
        windows = images.as_strided(  # (n, C, kh, kw, Ho, Wo), a view: no copy yet
            _column_shape(geom, n), (s_b, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw)
        )
        if self.images_inner:  # (C, kh, kw, n, Ho, Wo)
            windows = windows.permute(1, 2, 3, 0, 4, 5)
        cols = _scratch(self.x, tuple(windows.shape), "cols")
        cols.copy_(windows)  # the one copy of im2col, into the cached buffer
        if self.images_inner:
            return cols.view(geom.groups, geom.group_width, n * geom.positions)
        return cols.view(n, geom.groups, geom.group_width, geom.positions)


class ColumnFolder:
    """Adds chunks of grad_cols back onto NCHW grad_x (col2im) through a reused padded buffer."""

    def __init__(self, grad_x: Tensor, geom: ConvGeometry, chunk: int) -> None:
        self.grad_x, self.geom = grad_x, geom
        self.cols = self.padded = None
        if not geom.pointwise:  # pointwise: grad_cols is grad_x itself
            self.cols = _scratch(grad_x, _column_shape(geom, chunk), "cols")
            shape = (chunk, geom.channels, *geom.padded_size)
            self.padded = _scratch(grad_x, shape, "fold")

    def __call__(self, start: int, stop: int, grad_rows: Tensor, wt: Tensor) -> None:
        """grad_rows: (n, G, O/G, L) of grad_out; wt: (G, kh*kw*C/G, O/G), W transposed."""
        geom, n = self.geom, stop - start
        shape = (n, geom.groups, geom.group_width, geom.positions)
        target = (self.grad_x[start:stop] if self.cols is None else self.cols[:n]).view(shape)
        for g in range(geom.groups):  # grad_cols_b = W.T @ grad_out_b, every image of the chunk
            torch.bmm(wt[g].expand(n, -1, -1), grad_rows[:, g], out=target[:, g])
        if self.cols is None:
            return
        cols = self.cols[:n]  # (n, C, kh, kw, Ho, Wo)
        padded = self.padded[:n].zero_()  # (n, C, Hp, Wp)
        for i, j, rows, columns in _taps(geom):
            padded[:, :, rows, columns] += cols[:, :, i, j]
        self.grad_x[start:stop].copy_(_padded_interior(padded, geom))


def columns_forward(x: Tensor, weight: Tensor, bias: Tensor | None, geom: ConvGeometry) -> Tensor:
    """out_b = W @ cols_b + b for every image, written straight into the NCHW output."""
    chunk = _chunk_images(geom, x)
    unfold = ColumnUnfolder(x, geom, chunk)
    g, og = geom.groups, geom.out_channels // geom.groups
    w = weight.reshape(g, og, geom.group_width)  # (G, O/G, C/G*kh*kw): F.unfold's order
    out = x.new_empty((geom.batch, geom.out_channels, *geom.out_size))  # (B, O, Ho, Wo)
    b = bias.view(g, og, 1) if bias is not None else None  # added to every position
    for start in range(0, geom.batch, chunk):
        stop = min(start + chunk, geom.batch)
        cols = unfold(start, stop)  # (n, G, K/G, L)
        target = out[start:stop].view(stop - start, g, og, geom.positions)  # (n, G, O/G, L)
        for k in range(g):
            w_k = w[k].expand(stop - start, -1, -1)  # the same W for every image
            if b is None:
                torch.bmm(w_k, cols[:, k], out=target[:, k])
            else:
                torch.baddbmm(b[k], w_k, cols[:, k], out=target[:, k])
    return out


def columns_backward(
    grad_out: Tensor, x: Tensor, weight: Tensor, geom: ConvGeometry, needs: tuple[bool, ...]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """`ops.conv2d_unfold_backward` in the column layout: the same sums, image by image."""
    need_x, need_w, need_b = needs
    chunk = _chunk_images(geom, x)
    g, og, kg = geom.groups, geom.out_channels // geom.groups, geom.group_width
    acc = torch.promote_types(weight.dtype, torch.float32)
    grad_w = weight.new_zeros(g, og, kg, dtype=acc) if need_w else None  # (G, O/G, K/G)
    grad_b = weight.new_zeros(g, og, dtype=acc) if need_b else None  # (G, O/G)
    grad_x = torch.empty_like(x) if need_x else None  # (B, C, H, W), every pixel written
    unfold = ColumnUnfolder(x, geom, chunk, images_inner=True) if need_w else None
    fold = ColumnFolder(grad_x, geom, chunk) if need_x else None
    wt = weight.reshape(g, og, kg).transpose(1, 2).contiguous()  # (G, K/G, O/G)
    grad_out = grad_out.contiguous()  # NCHW; a copy only if it arrives in another layout
    for start in range(0, geom.batch, chunk):
        stop = min(start + chunk, geom.batch)
        n, positions = stop - start, geom.positions
        rows = grad_out[start:stop].view(n, g, og, positions)  # (n, G, O/G, L)
        if need_b:
            grad_b += rows.sum((0, 3), dtype=acc)
        if need_w:  # grad_W += sum over images of grad_out_b @ cols_b.T, as one product:
            cols = unfold(start, stop)  # (G, K/G, n*L)
            grads = _scratch(grad_out, (g, og, n, positions), "rows")
            grads.copy_(rows.permute(1, 2, 0, 3))  # (G, O/G, n, L): the images side by side
            _accumulate(grad_w, grads.view(g, og, n * positions), cols.transpose(1, 2))
        if need_x:
            fold(start, stop, rows, wt)
    grad_w = grad_w.view_as(weight).to(weight.dtype) if need_w else None  # (O, C/G, kh, kw)
    grad_b = grad_b.view(-1).to(weight.dtype) if need_b else None
    return grad_x, grad_w, grad_b
