"""The students' convolution, as the course's assignment built it: the baseline for `ops`.

`F.unfold` (im2col) of the whole batch, one matrix multiply, the bias added, and in backward
`F.fold` (col2im) of the input's gradient, with the unfolded input saved from forward:

    cols = F.unfold(x)                     (B, C*kh*kw, L)   saved for backward
    out  = W @ cols + b                    (B, O, L)         W = weight as (O, C*kh*kw)
    grad_W = sum_b grad_out @ cols.T       (O, C*kh*kw)
    grad_b = grad_out summed over B and L  (O,)
    grad_x = F.fold(W.T @ grad_out)        (B, C, H, W)

Saving `cols` (kh*kw times the input) is what made the reports' layer slow and hungry
(`scenelab bench conv` shows it beside `ops.UnfoldConv2d` and `nn.Conv2d`). One group only,
zero padding given as integers, as the assignment's layer.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


class CourseConv2dFn(torch.autograd.Function):
    """(x, weight, bias, stride, padding, dilation) -> the output as (B, O, L)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation):
        height, width = x.shape[-2:]
        fold = {"kernel_size": weight.shape[-2:], "dilation": dilation}
        fold |= {"padding": padding, "stride": stride}
        cols = F.unfold(x, **fold)
        out = weight.reshape(weight.shape[0], -1) @ cols
        if bias is not None:
            out += bias.view(1, -1, 1)
        ctx.save_for_backward(cols, weight)
        ctx.fold, ctx.size, ctx.has_bias = fold, (height, width), bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # grad: (B, O, L)
        cols, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_cols = weight.reshape(weight.shape[0], -1).t() @ grad
            grad_x = F.fold(grad_cols, ctx.size, **ctx.fold)
        if ctx.needs_input_grad[1]:
            grad_w = (grad @ cols.transpose(1, 2)).sum(0).view_as(weight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2))
        return grad_x, grad_w, grad_b, None, None, None


class CourseConv2d(nn.Conv2d):
    """nn.Conv2d computed by `CourseConv2dFn`: same parameters, init and state dict."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError(
                "CourseConv2d, the course assignment's layer, has one group and zero padding "
                f"given in pixels (got groups={self.groups}, padding={self.padding!r}, "
                f"padding_mode={self.padding_mode!r}); use --conv unfold or native"
            )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            return self.forward(x[None])[0]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
        )
        out_h = (x.shape[-2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        out_w = (x.shape[-1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        out = CourseConv2dFn.apply(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation
        )
        return out.view(x.shape[0], self.out_channels, out_h, out_w)  # outside: a plain view
