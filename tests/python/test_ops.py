"""torch.ops.rmsnorm.* against PyTorch and plain tensor-op formulas."""
import math

import pytest
import torch
import torch.nn.functional as TF

import rmsnorm


def plain_rms_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, p=1.0, placement="inside"):
    """SPEC's RMSNorm written with tensor ops (float64 in the tests)."""
    dims = len(normalized_shape)
    flat = x.reshape(*x.shape[: x.dim() - dims], -1)
    n = flat.shape[-1]
    k = max(1, math.ceil(n * p))
    ms = flat[..., :k].pow(2).mean(-1, keepdim=True)
    r = torch.sqrt(ms + eps) if placement == "inside" else torch.sqrt(ms) + eps
    y = (flat / r).reshape(x.shape)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


RMS_CASES = [
    # normalized_shape, weight, bias, placement, p
    ([7], True, False, "inside", 1.0),
    ([7], True, True, "outside", 1.0),
    ([7], False, False, "inside", 0.5),
    ([3, 5], True, False, "inside", 1.0),
    ([3, 5], True, True, "outside", 0.0625),
    ([16], True, False, "inside", 1.0 / 16),
    ([1], True, True, "inside", 1.0),
]


@pytest.mark.parametrize("shape,weight,bias,placement,p", RMS_CASES)
def test_rms_norm_gradcheck_float64(shape, weight, bias, placement, p):
    x = torch.randn(4, *shape, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(shape, dtype=torch.float64) + 0.5).requires_grad_() if weight else None
    b = torch.randn(shape, dtype=torch.float64, requires_grad=True) if bias else None
    inputs = (x, w, b)

    def f(x, w, b):
        return torch.ops.rmsnorm.rms_norm(x, shape, w, b, 1e-5, p, placement)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape,weight,bias", [([9], True, True), ([9], False, False), ([2, 6], True, False),
                                               ([2, 6], False, True), ([1], True, True)])
def test_layer_norm_gradcheck_float64(shape, weight, bias):
    x = torch.randn(3, *shape, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(shape, dtype=torch.float64) + 0.5).requires_grad_() if weight else None
    b = torch.randn(shape, dtype=torch.float64, requires_grad=True) if bias else None

    def f(x, w, b):
        return torch.ops.rmsnorm.layer_norm(x, shape, w, b, 1e-5)

    assert torch.autograd.gradcheck(f, (x, w, b), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("shape", [[33], [4, 17]])
def test_layer_norm_equals_pytorch_forward_and_backward(dtype, tol, shape):
    x = (torch.randn(5, 3, *shape, dtype=dtype) * 3 + 1).requires_grad_()
    w = (torch.rand(shape, dtype=dtype) + 0.5).requires_grad_()
    b = torch.randn(shape, dtype=dtype, requires_grad=True)
    dy = torch.randn(5, 3, *shape, dtype=dtype)
    ours = rmsnorm.layer_norm(x, shape, w, b, 1e-5)
    theirs = TF.layer_norm(x, shape, w, b, 1e-5)
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)
    g_ours = torch.autograd.grad(ours, (x, w, b), dy)
    g_theirs = torch.autograd.grad(theirs, (x, w, b), dy)
    for a, t in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, t, rtol=tol * 10, atol=tol * 10)


@pytest.mark.parametrize("placement", ["inside", "outside"])
@pytest.mark.parametrize("p", [1.0, 0.5, 0.0625])
def test_rms_norm_equals_plain_tensor_ops_float64(placement, p):
    shape = [64]
    x = torch.randn(6, 2, 64, dtype=torch.float64, requires_grad=True)
    w = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(6, 2, 64, dtype=torch.float64)
    ours = rmsnorm.rms_norm(x, shape, w, None, 1e-5, p, placement)
    plain = plain_rms_norm(x, shape, w, None, 1e-5, p, placement)
    torch.testing.assert_close(ours, plain, rtol=1e-13, atol=1e-13)
    for a, t in zip(torch.autograd.grad(ours, (x, w), dy), torch.autograd.grad(plain, (x, w), dy)):
        torch.testing.assert_close(a, t, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_within_one_ulp_of_rounded_reference(dtype):
    # SPEC section 4: 16-bit outputs within 1 unit in the last place of the
    # correctly rounded reference.
    x64 = torch.randn(8, 300, dtype=torch.float64)
    x = x64.to(dtype)
    w = (torch.rand(300) + 0.5).to(dtype)
    ours = rmsnorm.rms_norm(x, [300], w, None, 1e-5)
    ref = plain_rms_norm(x.double(), [300], w.double(), None, 1e-5)
    ref_rounded = ref.to(dtype).double()
    ulp = torch.finfo(dtype).eps * ref_rounded.abs().clamp_min(torch.finfo(dtype).tiny)
    assert ((ours.double() - ref_rounded).abs() <= ulp * 1.0001).all()
    # LayerNorm too, and its backward against float64 within the dtype's precision.
    xl = x.clone().requires_grad_()
    y = rmsnorm.layer_norm(xl, [300], w, None, 1e-5)
    ref_ln = TF.layer_norm(x.double(), [300], w.double(), None, 1e-5)
    ulp_ln = torch.finfo(dtype).eps * ref_ln.to(dtype).double().abs().clamp_min(torch.finfo(dtype).tiny)
    assert ((y.double() - ref_ln.to(dtype).double()).abs() <= ulp_ln * 1.0001).all()
    dy = torch.randn(8, 300).to(dtype)
    (dx,) = torch.autograd.grad(y, xl, dy)
    x_ref = x.double().requires_grad_()
    (dx_ref,) = torch.autograd.grad(TF.layer_norm(x_ref, [300], w.double(), None, 1e-5), x_ref, dy.double())
    rel = (dx.double() - dx_ref).norm() / dx_ref.norm()
    assert rel < 4 * torch.finfo(dtype).eps


def test_non_contiguous_and_leading_shapes():
    base = torch.randn(6, 10, 8, dtype=torch.float64)
    x = base.transpose(0, 1)  # (10, 6, 8), non-contiguous
    assert not x.is_contiguous()
    w = torch.rand(8, dtype=torch.float64)
    torch.testing.assert_close(rmsnorm.rms_norm(x, [8], w, eps=1e-5), plain_rms_norm(x, [8], w), rtol=1e-13, atol=1e-13)
    strided = base[:, ::2, :]  # every other row
    torch.testing.assert_close(rmsnorm.layer_norm(strided, [8], w), TF.layer_norm(strided, [8], w), rtol=1e-12,
                               atol=1e-12)
    scalar_rows = torch.randn(5, dtype=torch.float64)  # no leading dimensions
    torch.testing.assert_close(rmsnorm.rms_norm(scalar_rows, [5], eps=1e-5), plain_rms_norm(scalar_rows, [5]),
                               rtol=1e-13, atol=1e-13)


def test_float32_weight_with_bfloat16_input_gives_float32_weight_gradient():
    x = torch.randn(4, 32).to(torch.bfloat16).requires_grad_()
    w = torch.rand(32, requires_grad=True)
    y = rmsnorm.rms_norm(x, [32], w, eps=1e-5)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert w.grad.dtype == torch.float32 and x.grad.dtype == torch.bfloat16


def test_fused_add_rms_norm_matches_vllm_semantics():
    x = torch.randn(5, 48)
    residual = torch.randn(5, 48)
    w = torch.rand(48)
    expected_residual = residual + x
    expected = plain_rms_norm(expected_residual.double(), [48], w.double(), eps=1e-6).float()
    rmsnorm.fused_add_rms_norm(x, residual, w, 1e-6)
    torch.testing.assert_close(residual, expected_residual, rtol=0, atol=0)
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: rmsnorm.rms_norm(torch.randn(3, 4), [5]), "trailing dimensions"),
        (lambda: rmsnorm.rms_norm(torch.randn(3, 4), [4], torch.ones(5)), "weight must have shape"),
        (lambda: torch.ops.rmsnorm.rms_norm(torch.randn(3, 4), [4], None, None, 1e-5, 0.0, "inside"), "p must be"),
        (lambda: torch.ops.rmsnorm.rms_norm(torch.randn(3, 4), [4], None, None, 1e-5, 1.0, "middle"),
         "eps_placement"),
        (lambda: torch.ops.rmsnorm.rms_norm(torch.randn(3, 4), [4], None, None, -1.0, 1.0, "inside"), "eps must"),
        (lambda: rmsnorm.rms_norm(torch.ones(3, 4, dtype=torch.int32), [4], eps=1e-5), "must be float32"),
        (lambda: rmsnorm.layer_norm(torch.randn(3, 4), []), "at least one dimension"),
        (lambda: rmsnorm.fused_add_rms_norm(torch.randn(3, 4), torch.randn(3, 5), torch.ones(4)),
         "residual must have input's shape"),
        (lambda: rmsnorm.fused_add_rms_norm(torch.randn(3, 4, requires_grad=True), torch.randn(3, 4), torch.ones(4)),
         "inference form"),
    ],
)
def test_bad_arguments_raise_runtime_error_with_message(call, message):
    with pytest.raises(RuntimeError, match=message):
        call()


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: rmsnorm.rms_norm(torch.randn(3, 4), [4], p=1.5), "p must be in"),
        (lambda: rmsnorm.rms_norm(torch.randn(3, 4), [4], eps_placement="both"), "eps_placement"),
        (lambda: rmsnorm.RMSNorm(4, p=0), "p must be in"),
        (lambda: rmsnorm.convert(torch.nn.Linear(2, 2), to="batch"), "to must be"),
    ],
)
def test_bad_python_arguments_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _cuda_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to PyTorch: skipped")
    try:
        rmsnorm.rms_norm(torch.ones(1, 4, device="cuda"), [4])
    except RuntimeError as e:
        if "only CPU tensors" in str(e):
            pytest.skip("this build of librmsnorm_torch takes CPU tensors only: skipped")
        raise


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layer", [False, True])
def test_cuda_tensors_match_cpu_forward_and_backward(dtype, layer):
    _cuda_or_skip()
    torch.manual_seed(0)
    x = torch.randn(37, 1000, dtype=dtype)
    w = (1 + 0.5 * torch.randn(1000)).to(dtype)
    dy = torch.randn(37, 1000, dtype=dtype)
    outputs = []
    for device in ("cpu", "cuda"):
        xd = x.to(device).requires_grad_()
        wd = w.to(device).requires_grad_()
        y = rmsnorm.layer_norm(xd, [1000], wd) if layer else rmsnorm.rms_norm(xd, [1000], wd, eps=1e-5)
        gx, gw = torch.autograd.grad(y, (xd, wd), dy.to(device))
        outputs.append([t.detach().cpu().double() for t in (y, gx, gw)])
    tol = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
    for name, cpu, gpu in zip(("y", "dx", "dweight"), *outputs):
        assert ((gpu - cpu).norm() / cpu.norm()).item() <= tol, name


@pytest.mark.parametrize("layer", [False, True])
def test_double_backward_is_a_clear_error_not_a_silent_zero(layer):
    """A gradient penalty differentiates a gradient: the engine's backward is
    not differentiable, so that must raise, never drop the penalty's term."""
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(8, dtype=torch.float64) + 0.5).requires_grad_()

    def f(x, w):
        if layer:
            return torch.ops.rmsnorm.layer_norm(x, [8], w, None, 1e-5)
        return torch.ops.rmsnorm.rms_norm(x, [8], w, None, 1e-5, 1.0, "inside")

    # The first backward with create_graph=True works and gives the right numbers.
    (gx,) = torch.autograd.grad((f(x, w) * torch.arange(8.0, dtype=torch.float64)).sum(), x, create_graph=True)
    x_ref = x.detach().clone().requires_grad_()
    ref = TF.layer_norm(x_ref, [8], w.detach(), None, 1e-5) if layer else plain_rms_norm(x_ref, [8], w.detach())
    (gx_ref,) = torch.autograd.grad((ref * torch.arange(8.0, dtype=torch.float64)).sum(), x_ref)
    torch.testing.assert_close(gx.detach(), gx_ref)
    assert gx.requires_grad, "the gradient must carry a graph (that raises), not silently none"
    with pytest.raises(RuntimeError, match="double backward"):
        gx.pow(2).sum().backward()
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.gradgradcheck(f, (x, w))
