"""The ops as PyTorch's dispatcher and tools see them (issue 12): meta tensors, forward/backward
op pairs, TorchScript, torch.fx, gradcheck, no_grad / inference mode, autocast, out= and in-place
forms, zero-size and non-contiguous inputs, and the PyTorch 2.x tools where present."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as TF

import rmsnorm

ops = torch.ops.rmsnorm
TORCH_2_4 = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 4)


def plain_rms(x, n_dims, weight=None, bias=None, eps=1e-5, offset=0.0, p=1.0):
    flat = x.reshape(*x.shape[: x.dim() - n_dims], -1)
    k = max(1, math.ceil(flat.shape[-1] * p))
    r = torch.sqrt(flat[..., :k].pow(2).mean(-1, keepdim=True) + eps)
    y = (flat / r).reshape(x.shape)
    if weight is not None:
        y = y * (offset + weight)
    if bias is not None:
        y = y + bias
    return y


def silu(z):
    return z * torch.sigmoid(z)


def plain_gated(x, z, weight, group, gate, eps=1e-5):
    if gate == "before":
        x = x * silu(z)
    g = x.reshape(*x.shape[:-1], -1, group)
    y = (g / torch.sqrt(g.pow(2).mean(-1, keepdim=True) + eps)).reshape(x.shape)
    if weight is not None:
        y = y * weight
    if gate == "after":
        y = y * silu(z)
    return y


# ---------------------------------------------------------------- meta tensors


def test_forward_ops_on_meta_tensors_give_shapes_and_dtypes_without_data():
    x = torch.empty(2, 3, 5, 7, device="meta", dtype=torch.bfloat16)
    w = torch.empty(5, 7, device="meta")
    y, inv = ops.rms_norm_forward(x, [5, 7], w, None, 1e-5, 1.0, "inside", 0.0, "single")
    assert y.shape == x.shape and y.dtype == torch.bfloat16 and y.device.type == "meta"
    assert inv.shape == (2, 3) and inv.dtype == torch.float32
    y, mean, inv = ops.layer_norm_forward(x.double(), [5, 7], None, None, 1e-5, 0.0, "single")
    assert mean.shape == (2, 3) and mean.dtype == torch.float64 and inv.dtype == torch.float64
    y, h, inv = ops.add_rms_norm_forward(x, x, [7], w[0], None, 1e-5, 1.0, "inside", 0.0, "single")
    assert h.shape == x.shape and inv.shape == (2, 3, 5)
    y, inv = ops.gated_rms_norm_forward(x, x, None, 7, "after", 1e-5, "inside", 0.0)
    assert inv.shape == (2, 3, 5, 1)
    # The user-facing ops too, through their composite.
    assert rmsnorm.rms_norm(x, [5, 7], w).shape == x.shape
    assert rmsnorm.layer_norm(x, [7]).device.type == "meta"


def test_backward_ops_on_meta_tensors_honour_the_output_mask():
    x = torch.empty(4, 6, device="meta")
    w = torch.empty(6, device="meta", dtype=torch.bfloat16)
    b = torch.empty(6, device="meta", dtype=torch.bfloat16)
    inv = torch.empty(4, device="meta")
    dx, dw, db = ops.rms_norm_backward(x, x, [6], w, b, inv, 1e-5, 1.0, "inside", 0.0, [True, True, True])
    assert dx.shape == (4, 6) and dw.shape == (6,) and dw.dtype == torch.bfloat16 and db.dtype == torch.bfloat16
    dx, dw, db = ops.rms_norm_backward(x, x, [6], w, b, inv, 1e-5, 1.0, "inside", 0.0, [True, False, False])
    assert dw is None and db is None
    dh, dw, db = ops.add_rms_norm_backward(x, None, x, [6], w, None, inv, 1e-5, 1.0, "inside", 0.0,
                                           [True, True, False])
    assert dh.shape == (4, 6) and dw.shape == (6,) and db is None


def test_meta_kernels_reject_bad_calls_with_the_same_messages_as_cpu():
    for device in ("cpu", "meta"):
        x = torch.empty(3, 4, device=device)
        with pytest.raises(RuntimeError, match="weight must have shape"):
            ops.rms_norm_forward(x, [4], torch.empty(5, device=device), None, 1e-5, 1.0, "inside", 0.0, "single")
        with pytest.raises(RuntimeError, match="rounding must be"):
            ops.rms_norm_forward(x, [4], None, None, 1e-5, 1.0, "inside", 0.0, "twice")
        with pytest.raises(RuntimeError, match="weight_offset .* needs a weight"):
            ops.rms_norm_forward(x, [4], None, None, 1e-5, 1.0, "inside", 1.0, "single")
        with pytest.raises(RuntimeError, match="group_size 3 must divide"):
            ops.gated_rms_norm_forward(x, None, None, 3, "none", 1e-5, "inside", 0.0)
        with pytest.raises(RuntimeError, match="needs z"):
            ops.gated_rms_norm_forward(x, None, None, 2, "after", 1e-5, "inside", 0.0)
        with pytest.raises(RuntimeError, match="inv_rms must be the forward op's saved"):
            ops.rms_norm_backward(x, x, [4], None, None, torch.empty(2, device=device), 1e-5, 1.0, "inside", 0.0,
                                  [True, False, False])


# ---------------------------------------------------------------- the op pairs


def test_forward_op_returns_the_statistic_backward_uses():
    x = torch.randn(5, 3, 16, dtype=torch.float64)
    w = torch.rand(16, dtype=torch.float64) + 0.5
    y, inv = ops.rms_norm_forward(x, [16], w, None, 1e-5, 1.0, "inside", 0.0, "single")
    torch.testing.assert_close(inv, 1 / torch.sqrt(x.pow(2).mean(-1) + 1e-5), rtol=1e-15, atol=0)
    y, mean, inv = ops.layer_norm_forward(x, [16], w, None, 1e-5, 0.0, "single")
    torch.testing.assert_close(mean, x.mean(-1), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(inv, 1 / torch.sqrt(x.var(-1, unbiased=False) + 1e-5), rtol=1e-14, atol=0)
    dy = torch.randn_like(x)
    dx, dw, db = ops.layer_norm_backward(dy, x, [16], w, None, mean, inv, 1e-5, 0.0, [True, True, False])
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    gx, gw = torch.autograd.grad(TF.layer_norm(xr, [16], wr, None, 1e-5), (xr, wr), dy)
    torch.testing.assert_close(dx, gx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dw, gw, rtol=1e-12, atol=1e-12)
    assert db is None


@pytest.mark.parametrize("offset,p,bias", [(0.0, 1.0, False), (1.0, 1.0, True), (0.5, 0.25, False)])
def test_rms_norm_with_weight_offset_gradcheck(offset, p, bias):
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(8, dtype=torch.float64) - 0.5).requires_grad_()
    b = torch.randn(8, dtype=torch.float64, requires_grad=True) if bias else None

    def f(x, w, b):
        return rmsnorm.rms_norm(x, [8], w, b, 1e-5, p, weight_offset=offset)

    assert torch.autograd.gradcheck(f, (x, w, b), eps=1e-6, atol=1e-7)
    torch.testing.assert_close(f(x, w, b), plain_rms(x, 1, w, b, 1e-5, offset, p), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("use", ["both", "y_only", "h_only"])
def test_add_rms_norm_trains_both_inputs(use):
    x = torch.randn(4, 12, dtype=torch.float64, requires_grad=True)
    res = torch.randn(4, 12, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(12, dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(12, dtype=torch.float64, requires_grad=True)

    def f(x, res, w, b):
        y, h = rmsnorm.add_rms_norm(x, res, [12], w, b, 1e-5)
        if use == "y_only":
            return y
        if use == "h_only":
            return h * 1.5
        return y * 2 + h.sin()

    assert torch.autograd.gradcheck(f, (x, res, w, b), eps=1e-6, atol=1e-7)
    y, h = rmsnorm.add_rms_norm(x, res, [12], w, b, 1e-5)
    torch.testing.assert_close(h, x + res, rtol=0, atol=0)
    torch.testing.assert_close(y, plain_rms(x + res, 1, w, b), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_add_rms_norm_gives_the_engine_fused_add_bits(dtype):
    # The functional op forms h with at::add; the in-place inference op adds inside the engine.
    # SPEC section 8 defines both as round(residual + x) normalized: the same bits.
    x, res = torch.randn(6, 96).to(dtype), (4 * torch.randn(6, 96)).to(dtype)
    w = (1 + 0.1 * torch.randn(96)).to(dtype)
    y, h = rmsnorm.add_rms_norm(x, res, [96], w, eps=1e-6)
    x_inplace, res_inplace = x.clone(), res.clone()
    rmsnorm.fused_add_rms_norm(x_inplace, res_inplace, w, 1e-6)
    assert torch.equal(h, res_inplace) and torch.equal(y, x_inplace)


def test_add_rms_norm_leaves_the_residual_argument_unchanged():
    x, res = torch.randn(3, 8), torch.randn(3, 8)
    before = res.clone()
    rmsnorm.add_rms_norm(x, res, [8], torch.ones(8))
    assert torch.equal(res, before)


@pytest.mark.parametrize("gate", ["none", "before", "after"])
@pytest.mark.parametrize("group", [1, 3, 12])
def test_gated_rms_norm_gradcheck_and_formula(gate, group):
    x = torch.randn(3, 12, dtype=torch.float64, requires_grad=True)
    z = torch.randn(3, 12, dtype=torch.float64, requires_grad=True) if gate != "none" else None
    w = (torch.rand(12, dtype=torch.float64) + 0.5).requires_grad_()

    def f(x, z, w):
        return rmsnorm.gated_rms_norm(x, z, w, group, gate, 1e-5)

    assert torch.autograd.gradcheck(f, (x, z, w), eps=1e-6, atol=1e-7)
    torch.testing.assert_close(f(x, z, w), plain_gated(x, z, w, group, gate), rtol=1e-12, atol=1e-12)


def test_layer_norm_and_rms_norm_double_backward_raise_in_gradgradcheck():
    x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(6, dtype=torch.float64) + 0.5).requires_grad_()
    for f in (lambda x, w: rmsnorm.add_rms_norm(x, x.detach(), [6], w, None, 1e-5)[0],
              lambda x, w: rmsnorm.gated_rms_norm(x, x.detach(), w, 3, "after", 1e-5)):
        with pytest.raises(RuntimeError, match="double backward"):
            torch.autograd.gradgradcheck(f, (x, w))


# ---------------------------------------------------------------- grad modes and autocast


def test_no_grad_and_inference_mode_record_nothing_and_give_the_same_values():
    x = torch.randn(4, 32, requires_grad=True)
    w = torch.rand(32, requires_grad=True)
    with_grad = rmsnorm.rms_norm(x, [32], w, eps=1e-5)
    assert with_grad.grad_fn is not None
    with torch.no_grad():
        y = rmsnorm.rms_norm(x, [32], w, eps=1e-5)
    assert y.grad_fn is None and torch.equal(y, with_grad.detach())
    with torch.inference_mode():
        y = rmsnorm.layer_norm(x, [32], w)
        y2, h = rmsnorm.add_rms_norm(x, x, [32], w)
    assert y.is_inference() and not y.requires_grad and h.is_inference()


def test_autocast_bfloat16_activations_with_a_float32_weight():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 64)
    norm = rmsnorm.RMSNorm(64, eps=1e-6)
    x = torch.randn(8, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = linear(x)
        y = norm(h)
    assert h.dtype == torch.bfloat16 and y.dtype == torch.bfloat16 and norm.weight.dtype == torch.float32
    # The engine takes the float32 weight with bfloat16 data as is: the same bits as the direct call.
    assert torch.equal(y, rmsnorm.rms_norm(h.detach(), [64], norm.weight.detach(), eps=1e-6))
    y.float().pow(2).sum().backward()
    assert norm.weight.grad.dtype == torch.float32 and linear.weight.grad is not None
    assert torch.isfinite(norm.weight.grad).all()


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape,normalized", [((0, 8), [8]), ((3, 0, 8), [8]), ((4, 0), [0])])
def test_zero_size_inputs(shape, normalized):
    x = torch.randn(shape, requires_grad=True)
    w = torch.ones(normalized, requires_grad=True)
    for f in (lambda: rmsnorm.rms_norm(x, normalized, w, eps=1e-5), lambda: rmsnorm.layer_norm(x, normalized, w)):
        y = f()
        assert y.shape == x.shape
        gx, gw = torch.autograd.grad(y.sum(), (x, w))
        assert gx.shape == x.shape and torch.equal(gw, torch.zeros_like(w))


def test_non_contiguous_inputs_and_gradients():
    base = torch.randn(10, 6, 16, dtype=torch.float64)
    x = base.transpose(0, 1).requires_grad_()  # (6, 10, 16), not contiguous
    w = torch.rand(16, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(16, 10, 6, dtype=torch.float64).permute(2, 1, 0)  # not contiguous either
    y = rmsnorm.rms_norm(x, [16], w, eps=1e-5, weight_offset=0.25)
    ref_x = x.detach().clone().requires_grad_()
    ref_w = w.detach().clone().requires_grad_()
    ref = plain_rms(ref_x, 1, ref_w, None, 1e-5, 0.25)
    torch.testing.assert_close(y, ref, rtol=1e-13, atol=1e-13)
    for a, b in zip(torch.autograd.grad(y, (x, w), dy), torch.autograd.grad(ref, (ref_x, ref_w), dy)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


# ---------------------------------------------------------------- inference forms


def test_out_and_in_place_forms_equal_the_functional_op():
    x = torch.randn(5, 24)
    w = torch.rand(24)
    expected = rmsnorm.rms_norm(x, [24], w, eps=1e-6, rounding="before_weight")
    out = torch.empty(5, 24)
    result = rmsnorm.rms_norm(x, [24], w, eps=1e-6, rounding="before_weight", out=out)
    assert result is out and torch.equal(out, expected)
    resized = torch.empty(0)
    rmsnorm.rms_norm(x, [24], w, eps=1e-6, rounding="before_weight", out=resized)
    assert torch.equal(resized, expected)
    inplace = x.clone()
    version = inplace._version
    assert rmsnorm.rms_norm_(inplace, [24], w, eps=1e-6, rounding="before_weight") is inplace
    assert torch.equal(inplace, expected) and inplace._version > version
    ln = x.clone()
    rmsnorm.layer_norm_(ln, [24], w)
    assert torch.equal(ln, rmsnorm.layer_norm(x, [24], w))


def test_inference_forms_refuse_inputs_that_require_grad():
    x = torch.randn(3, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference form"):
        rmsnorm.rms_norm(x, [8], out=torch.empty(3, 8))
    with pytest.raises(RuntimeError, match="inference form"):
        rmsnorm.layer_norm_(torch.randn(3, 8), [8], torch.ones(8, requires_grad=True))
    with torch.no_grad():
        rmsnorm.rms_norm(x, [8], out=torch.empty(3, 8))  # allowed: no graph is being built
    with pytest.raises(RuntimeError, match="out must have input's shape"):
        rmsnorm.rms_norm(torch.randn(3, 8), [8], out=torch.empty(3, 9))
    with pytest.raises(RuntimeError, match="contiguous"):
        rmsnorm.rms_norm_(torch.randn(8, 3).t(), [8])


# ---------------------------------------------------------------- large outputs

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def vm_flags_at(address):
    """The VmFlags of the mapping of this process holding `address`, from /proc/self/smaps."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            begin, end = (int(v, 16) for v in head.split("-"))
            inside = begin <= address < end
        elif inside and head == "VmFlags:":
            return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


def middle_of(t):
    return t.data_ptr() + t.numel() * t.element_size() // 2


HUGE_PAGE_CHECK = """
import sys
sys.path[:0] = [{tests!r}, {package!r}]
import torch, rmsnorm
from test_dispatcher import vm_flags_at, middle_of
y = rmsnorm.rms_norm(torch.randn(2048, 4096), [4096])
print("hg" in vm_flags_at(middle_of(y)))
"""


@pytest.mark.skipif(not THP.exists(), reason="needs Linux with transparent huge pages")
def test_large_outputs_are_advised_to_use_huge_pages_and_keep_their_values():
    # 32 MiB and more: a fresh mapping per call under glibc, whose page faults cost more than
    # the norm (docs/PYTORCH.md); smaller outputs may share the heap and are left alone.
    x = torch.randn(2048, 4096, requires_grad=True)  # 32 MiB
    w = torch.rand(4096)
    y = rmsnorm.rms_norm(x, [4096], w, eps=1e-6)
    assert "hg" in vm_flags_at(middle_of(y))
    y.backward(torch.ones_like(y))
    assert "hg" in vm_flags_at(middle_of(x.grad))
    small = rmsnorm.rms_norm(x.detach()[:256], [4096], w, eps=1e-6)  # 4 MiB
    assert "hg" not in vm_flags_at(middle_of(small))
    with torch.no_grad():
        assert torch.equal(y, rmsnorm.rms_norm(x, [4096], w, eps=1e-6, out=torch.empty_like(x)))
    # RMSNORM_HUGE_PAGES=0 turns the advice off (read once per process: a fresh one).
    env = dict(os.environ)
    here = Path(__file__).resolve().parent
    code = HUGE_PAGE_CHECK.format(tests=str(here), package=str(here.parents[1] / "python"))
    for setting, advised in (("0", "False"), ("1", "True")):
        env["RMSNORM_HUGE_PAGES"] = setting
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert result.stdout.split()[-1] == advised, (setting, result.stdout, result.stderr)


# ---------------------------------------------------------------- TorchScript and torch.fx


def test_torch_jit_script_and_trace():
    @torch.jit.script
    def scripted(x: torch.Tensor, w: torch.Tensor, r: torch.Tensor):
        a = torch.ops.rmsnorm.rms_norm(x, [16], w, eps=1e-6, rounding="before_weight")
        y, h = torch.ops.rmsnorm.add_rms_norm(x, r, [16], w, None, 1e-6)
        return a + torch.ops.rmsnorm.layer_norm(x, [16], w) + y

    x, w, r = torch.randn(3, 16), torch.rand(16), torch.randn(3, 16)
    expected = (rmsnorm.rms_norm(x, [16], w, eps=1e-6, rounding="before_weight") + rmsnorm.layer_norm(x, [16], w)
                + rmsnorm.add_rms_norm(x, r, [16], w, None, 1e-6)[0])
    assert torch.equal(scripted(x, w, r), expected)
    assert "rmsnorm::rms_norm" in str(scripted.graph)

    model = torch.nn.Sequential(torch.nn.Linear(16, 16), rmsnorm.RMSNorm(16, eps=1e-6, weight_offset=1.0))
    traced = torch.jit.trace(model, (x,))
    assert torch.equal(traced(x), model(x))
    assert "rmsnorm::rms_norm" in str(traced.inlined_graph)


def test_torch_jit_script_compiles_the_modules():
    x = torch.randn(3, 16)
    for module in (rmsnorm.RMSNorm(16), rmsnorm.RMSNorm(16, eps=1e-6, p=0.5, eps_placement="outside"),
                   rmsnorm.presets.gemma(16), rmsnorm.LayerNorm(16)):
        scripted = torch.jit.script(module)
        assert torch.equal(scripted(x), module(x)), repr(module)


def test_torch_fx_symbolic_trace_keeps_the_ops():
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), rmsnorm.RMSNorm(16, p=0.5), rmsnorm.LayerNorm(16))
    gm = torch.fx.symbolic_trace(model)
    targets = [str(node.target) for node in gm.graph.nodes if node.op == "call_function"]
    assert any("rmsnorm.rms_norm" in t for t in targets), targets
    assert any("rmsnorm.layer_norm" in t for t in targets), targets
    x = torch.randn(4, 16)
    assert torch.equal(gm(x), model(x))


# ---------------------------------------------------------------- PyTorch 2.x tools


@pytest.mark.skipif(not TORCH_2_4, reason=f"torch.library.opcheck needs PyTorch >= 2.4; this is {torch.__version__}")
def test_opcheck():  # pragma: no cover - runs only on PyTorch >= 2.4
    x = torch.randn(3, 8, requires_grad=True)
    w = torch.rand(8, requires_grad=True)
    torch.library.opcheck(ops.rms_norm_forward.default, (x, [8], w, None, 1e-5, 1.0, "inside", 0.0, "single"))
    torch.library.opcheck(ops.layer_norm_forward.default, (x, [8], w, None, 1e-5, 0.0, "single"))
    torch.library.opcheck(ops.add_rms_norm_forward.default,
                          (x, torch.randn(3, 8), [8], w, None, 1e-5, 1.0, "inside", 0.0, "single"))


@pytest.mark.skipif(not TORCH_2_4, reason=f"torch.compile(fullgraph=True) needs PyTorch >= 2.4; this is {torch.__version__}")
def test_torch_compile_fullgraph():  # pragma: no cover - runs only on PyTorch >= 2.4
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), rmsnorm.RMSNorm(16, eps=1e-6))
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(4, 16)
    torch.testing.assert_close(compiled(x), model(x))
