"""rmsnorm.distributed over real gloo process groups on 127.0.0.1 (SPEC section 9).

Every test spawns its processes with torch.multiprocessing, on a free port chosen at run time,
with a timeout on the process group and on every wait; the processes are always reaped.
"""
import io
import math
import queue as queue_module
import socket
import traceback
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import rmsnorm
import rmsnorm.distributed as rd

N = 37  # an awkward width: uneven shards


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Each case: kind, dtype, p, eps_placement, bias. pRMSNorm p = 0.25 puts k = 10 inside rank 0's
# shard for every world size here; p = 0.5 (k = 19) spans ranks 0 and 1 for 3 and 4 ranks.
CASES = [
    ("rms", torch.float32, 1.0, "inside", False),
    ("rms", torch.float32, 0.25, "inside", False),
    ("rms", torch.float32, 0.5, "outside", False),
    ("layer", torch.float32, 1.0, "inside", True),
    ("rms", torch.bfloat16, 0.5, "inside", False),
    ("layer", torch.bfloat16, 1.0, "inside", True),
]


def _inputs(seed, dtype):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(5, 3, N, generator=g, dtype=torch.float64) * 2 + 0.5).to(dtype)
    dy = torch.randn(5, 3, N, generator=g, dtype=torch.float64).to(dtype)
    weight = (1 + 0.5 * torch.randn(N, generator=g, dtype=torch.float64)).to(dtype)
    bias = (0.5 * torch.randn(N, generator=g, dtype=torch.float64)).to(dtype)
    return x, dy, weight, bias


def _module(kind, p, placement, bias, width, dtype):
    if kind == "layer":
        return rd.ShardedLayerNorm(N, local_hidden=width, eps=1e-5, bias=bias, dtype=dtype)
    return rd.ShardedRMSNorm(N, local_hidden=width, eps=1e-6, p=p, eps_placement=placement, dtype=dtype)


def _unsharded(kind, p, placement, x, dy, weight, bias):
    x = x.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    b = bias.clone().requires_grad_() if kind == "layer" else None
    if kind == "layer":
        y = rmsnorm.layer_norm(x, [N], w, b, eps=1e-5)
    else:
        y = rmsnorm.rms_norm(x, [N], w, None, eps=1e-6, p=p, eps_placement=placement)
    y.backward(dy)
    return y.detach(), x.grad, w.grad, (b.grad if b is not None else None)


# ---------------------------------------------------------------- the processes

def _run_cases(rank, world):
    widths = rd.even_split(N, world)
    begin = sum(widths[:rank])
    columns = slice(begin, begin + widths[rank])
    out = []
    for i, (kind, dtype, p, placement, bias) in enumerate(CASES):
        x, dy, weight, b = _inputs(100 + i, dtype)
        norm = _module(kind, p, placement, bias, widths[rank], dtype)
        with torch.no_grad():
            norm.weight.copy_(weight[columns])
            if norm.bias is not None:
                norm.bias.copy_(b[columns])
        xl = x[..., columns].clone().requires_grad_()
        y = norm(xl)
        y.backward(dy[..., columns])
        out.append((y.detach(), xl.grad, norm.weight.grad, norm.bias.grad if norm.bias is not None else None))
    return out


def _run_errors(rank, world):
    messages = []
    # Widths that do not add up to global_hidden: the same error on every rank.
    try:
        rd.ShardedRMSNorm(N, local_hidden=5 + rank)
        messages.append(None)
    except ValueError as e:
        messages.append(str(e))
    norm = rd.ShardedRMSNorm(N)
    try:
        norm(torch.randn(2, norm.local_hidden + 1))
        messages.append(None)
    except ValueError as e:
        messages.append(str(e))
    with torch.no_grad():
        norm.weight = torch.nn.Parameter(torch.ones(norm.local_hidden + 2))
    try:
        norm(torch.randn(2, norm.local_hidden))
        messages.append(None)
    except ValueError as e:
        messages.append(str(e))
    return messages


def _run_sequence_parallel(rank, world):
    # Each rank holds whole rows (its part of the sequence); the weight gradient is a partial
    # sum until allreduce_norm_gradients adds the ranks' parts.
    g = torch.Generator().manual_seed(7)
    x = torch.randn(world * 4, N, generator=g, dtype=torch.float64)
    dy = torch.randn(world * 4, N, generator=g, dtype=torch.float64)
    norm = rmsnorm.RMSNorm(N, eps=1e-6, dtype=torch.float64)
    rows = slice(rank * 4, rank * 4 + 4)
    norm(x[rows]).backward(dy[rows])
    reduced = rd.allreduce_norm_gradients(norm)
    return reduced, norm.weight.grad.clone()


def _run_training(rank, world):
    # A two-layer model whose norm is sharded over the hidden dimension: each rank computes its
    # columns of the hidden layer, norms them with the sharded norm, and the output layer sums
    # the ranks' contributions (an all-reduce, as a row-parallel linear layer does).
    torch.manual_seed(3)
    hidden = 24
    widths = rd.even_split(hidden, world)
    begin = sum(widths[:rank])
    columns = slice(begin, begin + widths[rank])
    w1 = torch.randn(hidden, 8, dtype=torch.float64) * 0.3
    w2 = torch.randn(1, hidden, dtype=torch.float64) * 0.3
    data = torch.randn(64, 8, dtype=torch.float64)
    target = torch.sin(data.sum(-1, keepdim=True))
    w1_local = w1[columns].clone().requires_grad_()
    w2_local = w2[:, columns].clone().requires_grad_()
    norm = rd.ShardedRMSNorm(hidden, local_hidden=widths[rank], eps=1e-6, dtype=torch.float64)
    params = [w1_local, w2_local, norm.weight]
    losses = []
    for _ in range(20):
        h = torch.tanh(data @ w1_local.t())
        partial = norm(h) @ w2_local.t()
        out = partial.clone()
        dist.all_reduce(out)
        out = partial + (out - partial).detach()  # the sum, with this rank's part differentiable
        loss = ((out - target) ** 2).mean()
        for param in params:
            param.grad = None
        loss.backward()
        with torch.no_grad():
            for param in params:
                param -= 0.1 * param.grad
        losses.append(loss.item())
    return losses


_JOBS = {"cases": _run_cases, "errors": _run_errors, "sequence": _run_sequence_parallel, "training": _run_training}


def _worker(rank, world, port, job, results):
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                timeout=timedelta(seconds=60))
        # As bytes: a tensor sent through the queue is shared by file descriptor, which is
        # gone once this process exits.
        buffer = io.BytesIO()
        torch.save(_JOBS[job](rank, world), buffer)
        results.put((rank, buffer.getvalue(), None))
    except Exception:  # noqa: BLE001 - reported to the parent
        results.put((rank, None, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _spawn(world, job, timeout=180):
    context = mp.get_context("spawn")
    results = context.Queue()
    port = _free_port()
    processes = [context.Process(target=_worker, args=(r, world, port, job, results)) for r in range(world)]
    for p in processes:
        p.start()
    collected = {}
    try:
        for _ in range(world):
            rank, value, error = results.get(timeout=timeout)
            assert error is None, f"rank {rank} failed:\n{error}"
            collected[rank] = torch.load(io.BytesIO(value))
    except queue_module.Empty:
        pytest.fail(f"{job}: no answer from every rank within {timeout} s (a hang)")
    finally:
        for p in processes:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    return [collected[r] for r in range(world)]


# ---------------------------------------------------------------- the tests

def _tolerances(dtype):
    # float32: SPEC's 1e-6 (1 + log2 n) norm-wise, here element-wise with room for the
    # different summation orders; bfloat16: one unit in the last place (2^-8 relative).
    return (3e-5, 1e-5) if dtype == torch.float32 else (2 ** -7, 2 ** -7)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_every_rank_matches_the_unsharded_norm(world):
    per_rank = _spawn(world, "cases")
    widths = rd.even_split(N, world)
    for i, (kind, dtype, p, placement, bias) in enumerate(CASES):
        x, dy, weight, b = _inputs(100 + i, dtype)
        y, dx, dw, db = _unsharded(kind, p, placement, x, dy, weight, b)
        rtol, atol = _tolerances(dtype)
        begin = 0
        for rank in range(world):
            columns = slice(begin, begin + widths[rank])
            begin += widths[rank]
            ys, dxs, dws, dbs = per_rank[rank][i]
            what = f"{kind} {dtype} p={p} {placement}, rank {rank} of {world}"
            torch.testing.assert_close(ys.double(), y[..., columns].double(), rtol=rtol, atol=atol, msg=what + ": y")
            torch.testing.assert_close(dxs.double(), dx[..., columns].double(), rtol=rtol, atol=atol,
                                       msg=what + ": dx")
            scale = dw.double().abs().max().item()
            torch.testing.assert_close(dws.double(), dw[columns].double(), rtol=rtol, atol=atol * max(1, scale),
                                       msg=what + ": dweight")
            if db is not None:
                torch.testing.assert_close(dbs.double(), db[columns].double(), rtol=rtol, atol=atol * 15,
                                           msg=what + ": dbias")


def test_k_inside_rank_zero_and_spanning_two_shards():
    # What the cases above rely on, stated: with 3 ranks, p = 0.25 puts k inside rank 0's columns
    # and p = 0.5 across ranks 0 and 1.
    widths = rd.even_split(N, 3)
    assert widths == [13, 12, 12]
    assert rmsnorm.rms_norm  # the package is loaded
    assert math.ceil(N * 0.25) == 10 < widths[0]
    assert widths[0] < math.ceil(N * 0.5) == 19 <= widths[0] + widths[1]


def test_bad_shards_are_the_same_error_on_every_rank():
    per_rank = _spawn(2, "errors")
    for rank, messages in enumerate(per_rank):
        assert messages[0] is not None and "must be >= 1 and add up to global_hidden = 37" in messages[0], messages
        assert messages[0] == per_rank[0][0], "every rank reports the same widths"
        assert messages[1] is not None and "this rank holds" in messages[1], messages
        assert messages[2] is not None and "expected this rank's width" in messages[2], messages


def test_sequence_parallel_weight_gradient_is_the_single_process_one():
    per_rank = _spawn(2, "sequence")
    g = torch.Generator().manual_seed(7)
    x = torch.randn(8, N, generator=g, dtype=torch.float64)
    dy = torch.randn(8, N, generator=g, dtype=torch.float64)
    norm = rmsnorm.RMSNorm(N, eps=1e-6, dtype=torch.float64)
    norm(x).backward(dy)
    for reduced, grad in per_rank:
        assert reduced == ["weight"]
        torch.testing.assert_close(grad, norm.weight.grad, rtol=1e-12, atol=1e-12)


def test_a_model_with_sharded_norms_trains_as_on_one_process():
    per_rank = _spawn(2, "training")
    single = _spawn(1, "training")[0]
    assert per_rank[0] == per_rank[1], "both ranks see the same loss"
    assert single[-1] < single[0], "the model learns"
    for step, (sharded, alone) in enumerate(zip(per_rank[0], single)):
        assert sharded == pytest.approx(alone, rel=1e-9), f"step {step}"


def test_a_group_must_be_initialized():
    if dist.is_initialized():
        pytest.skip("a process group exists in this process")
    with pytest.raises(RuntimeError, match="torch.distributed is not initialized"):
        rd.ShardedRMSNorm(N)
    with pytest.raises(ValueError, match="expected at least 1"):
        rd.even_split(N, 0)
