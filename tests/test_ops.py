"""The hand-written convolution against its oracles: nn.Conv2d / F.conv2d and gradcheck."""

import copy
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scenelab import _conv_chunks, _conv_columns, ops
from scenelab.config import ModelConfig, OptimConfig
from scenelab.course_conv import CourseConv2d, CourseConv2dFn
from scenelab.models import build_model
from scenelab.ops import UnfoldConv2d, conv2d_unfold, conv2d_unfold_backward, conv_geometry
from scenelab.optim import build_optimizer

# (in, out, kernel, stride, padding, dilation, groups, input H x W)
CASES = [
    (3, 8, 3, 1, 1, 1, 1, (9, 9)),
    (3, 8, 7, 2, 3, 1, 1, (17, 13)),  # SimpleNet's stem, non-square input
    (4, 6, 1, 1, 0, 1, 1, (5, 7)),  # pointwise: no unfold
    (4, 6, 1, 2, 0, 1, 1, (6, 6)),  # strided 1x1 takes the unfold path
    (4, 6, (2, 3), (2, 1), (1, 0), (1, 2), 2, (8, 11)),  # non-square everything, groups
    (6, 6, 3, 1, 1, 1, 6, (7, 5)),  # depthwise
    (4, 8, 3, 1, "same", 2, 4, (9, 8)),
    (4, 4, 4, 1, "same", 1, 1, (7, 7)),  # even kernel: uneven 'same' padding
    (4, 4, 3, 1, "valid", 1, 1, (6, 9)),
    (8, 4, 3, 3, 0, 1, 2, (10, 10)),  # stride = kernel: windows do not overlap
    (2, 3, 5, 2, 4, 1, 1, (4, 4)),  # padding larger than the input's half
]


def _pair(case, dtype=torch.float64, bias=True, device="cpu"):
    cin, cout, k, s, p, d, g, _ = case
    ref = nn.Conv2d(cin, cout, k, s, p, d, g, bias=bias, dtype=dtype, device=device)
    ours = UnfoldConv2d(cin, cout, k, s, p, d, g, bias=bias, dtype=dtype, device=device)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _input(case, batch=3, dtype=torch.float64, channels_last=False, device="cpu"):
    x = torch.randn(batch, case[0], *case[-1], dtype=dtype, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_()


# The layouts of the hand-written product: NCHW input in F.unfold's columns (every conv, not only
# those with enough positions per image), NCHW input in the rows layout (transposed on the way in
# and out; pointwise convs keep the columns), and channels-last input in rows.
LAYOUTS = {"columns": 0, "nchw-rows": 10**9, "channels_last": None}


@pytest.fixture(params=list(LAYOUTS))
def channels_last(request, monkeypatch) -> bool:
    """Selects a layout (see LAYOUTS); the test gets whether its input is channels-last."""
    if LAYOUTS[request.param] is not None:
        monkeypatch.setattr(_conv_columns, "MIN_COLUMN_POSITIONS", LAYOUTS[request.param])
    return request.param == "channels_last"


def _outputs_and_grads(conv: nn.Conv2d, x: torch.Tensor, grad: torch.Tensor):
    out = conv(x)
    params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
    return (out, *torch.autograd.grad(out, [x, *params], grad))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # F.conv2d's note
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_and_all_gradients_equal_nn_conv2d(case, bias, channels_last):
    ref, ours = _pair(case, bias=bias)
    x = _input(case, channels_last=channels_last)
    grad = torch.randn_like(ref(x))
    for got, want in zip(
        _outputs_and_grads(ours, x, grad), _outputs_and_grads(ref, x, grad), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES[:6], ids=str)
def test_float32_matches_nn_conv2d_within_float_tolerance(case, channels_last):
    ref, ours = _pair(case, dtype=torch.float32)
    x = _input(case, dtype=torch.float32, channels_last=channels_last)
    grad = torch.randn_like(ref(x))
    for got, want in zip(
        _outputs_and_grads(ours, x, grad), _outputs_and_grads(ref, x, grad), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(stride=1, padding=1, dilation=1, groups=1),
        dict(stride=2, padding=(1, 2), dilation=1, groups=1),
        dict(stride=(1, 2), padding=2, dilation=2, groups=3),
        dict(stride=1, padding="same", dilation=1, groups=1),
    ],
    ids=str,
)
def test_gradcheck_in_float64(kwargs, channels_last, monkeypatch):
    monkeypatch.setitem(ops._CHUNK_BYTES, "cpu", 1)  # one image per chunk: chunk seams checked
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.randn(6, 3 // kwargs["groups"], 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: conv2d_unfold(x, w, b, **kwargs), (x, w, b))


def test_chunks_of_images_give_the_same_result_as_one_chunk(channels_last, monkeypatch):
    case = CASES[0]
    ref, ours = _pair(case)
    x = _input(case, batch=5, channels_last=channels_last)
    grad = torch.randn_like(ref(x))
    whole = _outputs_and_grads(ours, x, grad)
    monkeypatch.setitem(ops._CHUNK_BYTES, "cpu", 1)
    for got, want in zip(_outputs_and_grads(ours, x, grad), whole, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_bfloat16_follows_the_float32_result(channels_last):
    case = CASES[1]
    ref, ours = _pair(case, dtype=torch.float32)
    x = _input(case, dtype=torch.float32, channels_last=channels_last).detach()
    x16, ours16 = x.bfloat16().requires_grad_(), copy.deepcopy(ours).bfloat16()
    ref.load_state_dict(copy.deepcopy(ours16).float().state_dict())  # the bf16-rounded weights
    grad = torch.randn_like(ref(x))
    got = _outputs_and_grads(ours16, x16, grad.bfloat16())
    want = _outputs_and_grads(ref, x16.detach().float().requires_grad_(), grad)
    assert all(t.dtype == torch.bfloat16 for t in got)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.float(), w, rtol=2e-2, atol=2e-2 * w.abs().max().item())


@pytest.mark.parametrize("case", [CASES[0], CASES[2]], ids=["3x3", "pointwise"])
def test_output_and_gradient_keep_the_input_memory_format(case, channels_last):
    ref, ours = _pair(case)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = _input(case, channels_last=channels_last)
    out = ours(x)
    out.sum().backward()
    assert out.is_contiguous(memory_format=fmt) and x.grad.is_contiguous(memory_format=fmt)


def test_works_before_an_inplace_relu(channels_last):
    ref, ours = _pair(CASES[0])
    x = _input(CASES[0], channels_last=channels_last)
    out = ours(x)
    assert out._base is None  # a fresh tensor, not a view an in-place op would break
    grads = [
        torch.autograd.grad(F.relu(c(x), inplace=True).sum(), [x, c.weight]) for c in (ours, ref)
    ]
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want)


def test_trains_after_an_inference_mode_call_with_a_larger_batch(channels_last, monkeypatch):
    """Validation (inference_mode, maybe a larger batch) first sizes the scratch buffers; the
    next training step must still be able to write to them."""
    monkeypatch.setattr(_conv_chunks, "_workspace", threading.local())  # no buffers yet
    ref, ours = _pair(CASES[0])
    with torch.inference_mode():
        big = _input(CASES[0], batch=8, channels_last=channels_last).detach()
        torch.testing.assert_close(ours(big), ref(big))
    x = _input(CASES[0], channels_last=channels_last)
    grad = torch.randn_like(ref(x))
    for got, want in zip(
        _outputs_and_grads(ours, x, grad), _outputs_and_grads(ref, x, grad), strict=True
    ):
        torch.testing.assert_close(got, want)


def test_unneeded_gradients_are_skipped(channels_last, monkeypatch):
    ref, ours = _pair(CASES[0])
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)  # no grad: like the image into the stem
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    class NoFold:
        def __init__(self, *args):
            raise AssertionError("grad_x was computed although the input needs none")

    monkeypatch.setattr(ops, "_Folder", NoFold)
    monkeypatch.setattr(_conv_columns, "ColumnFolder", NoFold)
    ours(x).sum().backward()
    assert x.grad is None and ours.weight.grad is not None
    geom = conv_geometry(x, ours.weight, 1, 1, 1, 1)
    grads = conv2d_unfold_backward(
        torch.ones(2, 8, 9, 9, dtype=torch.float64), x, ours.weight, geom, (False, False, True)
    )
    assert grads[0] is None and grads[1] is None and grads[2] is not None


def test_unbatched_and_empty_batches_work_like_nn_conv2d(channels_last):
    ref, ours = _pair(CASES[0])
    x = torch.randn(3, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))
    empty = torch.randn(0, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    assert ours(empty).shape == ref(empty).shape == (0, 8, 9, 9)
    ours(empty).sum().backward()
    assert not ours.weight.grad.any()


def test_state_dict_and_repr_are_nn_conv2d_s_in_both_directions():
    ref, ours = _pair(CASES[4], bias=False)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert repr(ours).replace("UnfoldConv2d", "Conv2d") == repr(ref)
    ref.load_state_dict(ours.state_dict())
    assert isinstance(ours, nn.Conv2d)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_other_padding_modes_are_refused_when_built(mode):
    with pytest.raises(ValueError, match="padding_mode='zeros'.*--conv native"):
        UnfoldConv2d(3, 4, 3, padding=1, padding_mode=mode)


def test_complex_weights_are_refused():
    with pytest.raises(ValueError, match="complex"):
        UnfoldConv2d(3, 4, 3, dtype=torch.complex64)


@pytest.mark.parametrize(
    ("shape", "kwargs", "message"),
    [
        ((2, 5, 8, 8), {}, "input has 5 channels but the weight expects 4"),
        ((2, 4, 2, 2), {}, "smaller than the"),
        ((4, 8, 8), {"groups": 3}, "groups=3 must divide"),
        ((2, 4, 8, 8), {"padding": "full"}, "'valid', 'same'"),
        ((2, 4, 8, 8), {"padding": "same", "stride": 2}, "strided"),
        ((8, 8), {}, "expected a 4-D input"),
    ],
)
def test_bad_arguments_get_a_clear_error(shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        conv2d_unfold(torch.randn(shape), torch.randn(6, 4, 3, 3), **kwargs)


def test_dtype_mismatch_gets_a_clear_error():
    with pytest.raises(ValueError, match="share dtype and device"):
        conv2d_unfold(torch.randn(1, 4, 8, 8), torch.randn(6, 4, 3, 3, dtype=torch.float64))


def _train_losses(conv: str, steps: int = 4) -> list[float]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="simplenet", conv=conv), num_classes=10)
    optimizer = build_optimizer(model, OptimConfig(lr=0.05))
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_simplenet_trains_the_same_with_either_convolution():
    native, unfold = _train_losses("native"), _train_losses("unfold")
    assert native[-1] < native[0]
    assert unfold == pytest.approx(native, rel=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_nn_conv2d_on_cuda(case):
    ref, ours = _pair(case, device="cuda")  # float64: cuDNN's TF32 would blur a float32 check
    x = _input(case, device="cuda")
    grad = torch.randn_like(ref(x))
    for got, want in zip(
        _outputs_and_grads(ours, x, grad), _outputs_and_grads(ref, x, grad), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


# The course assignment's layer (`--conv course`): one group, padding in pixels.
COURSE_CASES = [c for c in CASES if c[6] == 1 and not isinstance(c[4], str)]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("case", COURSE_CASES, ids=str)
def test_the_course_layer_equals_nn_conv2d(case, bias, channels_last):
    cin, cout, k, s, p, d, g, _ = case
    ref = nn.Conv2d(cin, cout, k, s, p, d, g, bias=bias, dtype=torch.float64)
    course = CourseConv2d(cin, cout, k, s, p, d, g, bias=bias, dtype=torch.float64)
    course.load_state_dict(ref.state_dict())
    x = _input(case, channels_last=channels_last)
    grad = torch.randn_like(ref(x))
    for got, want in zip(
        _outputs_and_grads(course, x, grad), _outputs_and_grads(ref, x, grad), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_the_course_layer_passes_gradcheck(bias):
    torch.manual_seed(0)
    conv = CourseConv2d(3, 4, (3, 2), (2, 1), (1, 2), 2, bias=bias, dtype=torch.float64)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    params = (conv.weight, conv.bias) if bias else (conv.weight,)
    assert torch.autograd.gradcheck(
        lambda x, *p: CourseConv2dFn.apply(
            x, *p, *([] if bias else [None]), conv.stride, conv.padding, conv.dilation
        ),
        (x, *params),
    )


@pytest.mark.parametrize(
    "kwargs", [dict(groups=2), dict(padding="same"), dict(padding_mode="reflect")]
)
def test_the_course_layer_refuses_what_the_assignment_had_not(kwargs):
    with pytest.raises(ValueError, match="use --conv unfold or native"):
        CourseConv2d(4, 4, 3, **kwargs)


def test_simplenet_builds_and_trains_with_each_convolution():
    for name, layer in (("native", nn.Conv2d), ("unfold", UnfoldConv2d), ("course", CourseConv2d)):
        model = build_model(ModelConfig(model="simplenet", conv=name), 5, 32)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert convs and all(type(m) is layer for m in convs)
        out = model(torch.rand(2, 3, 32, 32))  # each conv followed by an in-place ReLU
        out.sum().backward()
        assert out.shape == (2, 5) and all(p.grad is not None for p in model.parameters())
