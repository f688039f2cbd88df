"""Norms over a hidden dimension split across processes (tensor parallelism), over torch.distributed.

Each rank holds its columns of every row and its slice of the weight. Forward computes the
shard's row sums with the engine (torch.ops.rmsnorm.shard_*), combines them across the group,
and applies the global statistic to its own columns; backward does the same for the gradient's
row sums (SPEC section 9). The sums are float64 [rows, 3]; they are all-gathered and added in
rank order, so every rank gets bitwise the same statistic.

    import torch.distributed as dist, rmsnorm.distributed as rd
    dist.init_process_group("gloo", ...)
    norm = rd.ShardedRMSNorm(4096)          # this rank's columns: an even split, or local_hidden=...
    y_local = norm(x_local)                 # x_local: [..., norm.local_hidden]

Sequence parallelism (each rank holds whole rows, a part of the sequence) needs no sharded norm,
only the weight's gradient summed over the group: see allreduce_norm_gradients.
"""
from typing import List, Optional, Sequence

import torch
import torch.distributed as dist

__all__ = ["ShardedRMSNorm", "ShardedLayerNorm", "sharded_norm", "even_split", "allreduce_norm_gradients"]


def even_split(global_hidden: int, world_size: int) -> List[int]:
    """Widths of an even split: the first global_hidden % world_size ranks hold one more column."""
    if world_size < 1:
        raise ValueError(f"rmsnorm.distributed: the group has {world_size} ranks; expected at least 1")
    base, extra = divmod(global_hidden, world_size)
    return [base + (1 if r < extra else 0) for r in range(world_size)]


def _sum_in_rank_order(sums: torch.Tensor, group) -> torch.Tensor:
    world = dist.get_world_size(group)
    if world == 1:
        return sums
    parts = [torch.empty_like(sums) for _ in range(world)]
    dist.all_gather(parts, sums.contiguous(), group=group)
    total = torch.zeros_like(sums)
    for part in parts:  # rank order, the same on every rank
        total += part
    return total


def _widths(local_hidden: int, group) -> List[int]:
    world = dist.get_world_size(group)
    mine = torch.tensor([local_hidden], dtype=torch.int64)
    gathered = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine, group=group)
    return [int(t.item()) for t in gathered]


class _ShardedNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, global_n, column_begin, layer_norm, eps, p, eps_placement, weight_offset, group):
        ops = torch.ops.rmsnorm
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).contiguous()
        reduced0 = _sum_in_rank_order(
            ops.shard_forward_sums(rows, global_n, column_begin, 0, None, layer_norm, eps, p, eps_placement), group
        )
        reduced1 = None
        if layer_norm:
            reduced1 = _sum_in_rank_order(
                ops.shard_forward_sums(rows, global_n, column_begin, 1, reduced0, layer_norm, eps, p, eps_placement),
                group,
            )
        y, inv_rms, mean = ops.shard_forward_apply(
            rows, global_n, column_begin, reduced0, reduced1, weight, bias, layer_norm, eps, p, eps_placement,
            weight_offset,
        )
        ctx.save_for_backward(rows, weight, inv_rms, mean)
        ctx.settings = (shape, global_n, column_begin, layer_norm, eps, p, eps_placement, weight_offset, group)
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return y.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        ops = torch.ops.rmsnorm
        rows, weight, inv_rms, mean = ctx.saved_tensors
        shape, global_n, column_begin, layer_norm, eps, p, eps_placement, weight_offset, group = ctx.settings
        dy = grad.reshape(-1, shape[-1]).to(rows.dtype).contiguous()
        reduced = _sum_in_rank_order(
            ops.shard_backward_sums(
                rows, dy, global_n, column_begin, weight, inv_rms, mean, layer_norm, eps, p, eps_placement,
                weight_offset,
            ),
            group,
        )
        want_weight = weight is not None and ctx.needs_input_grad[1]
        want_bias = ctx.bias_dtype is not None and ctx.needs_input_grad[2]
        dx, dweight, dbias = ops.shard_backward_apply(
            rows, dy, global_n, column_begin, weight, inv_rms, mean, reduced, layer_norm, eps, p, eps_placement,
            weight_offset, want_weight, want_bias,
        )
        if want_weight:
            dweight = dweight.to(weight.dtype)
        if want_bias:
            dbias = dbias.to(ctx.bias_dtype)
        return (dx.reshape(shape), dweight if want_weight else None, dbias if want_bias else None) + (None,) * 8


def sharded_norm(
    x: torch.Tensor,
    global_n: int,
    column_begin: int,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    layer_norm: bool = False,
    eps: float = 1e-6,
    p: float = 1.0,
    eps_placement: str = "inside",
    weight_offset: float = 0.0,
    group=None,
) -> torch.Tensor:
    """The norm of rows whose columns [column_begin, column_begin + x.shape[-1]) are on this rank."""
    if eps_placement not in ("inside", "outside"):
        raise ValueError(f'rmsnorm: eps_placement must be "inside" or "outside", got {eps_placement!r}')
    return _ShardedNormFunction.apply(
        x, weight, bias, int(global_n), int(column_begin), bool(layer_norm), float(eps), float(p), eps_placement,
        float(weight_offset), group,
    )


class _ShardedNorm(torch.nn.Module):
    def __init__(self, global_hidden, local_hidden, group, eps, p, eps_placement, weight_offset, layer_norm,
                 elementwise_affine, bias, dtype):
        super().__init__()
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("rmsnorm.distributed: torch.distributed is not initialized (init_process_group first)")
        world = dist.get_world_size(group)
        if world < 1:
            raise ValueError(f"rmsnorm.distributed: the group has {world} ranks; expected at least 1")
        rank = dist.get_rank(group)
        if local_hidden is None:
            local_hidden = even_split(global_hidden, world)[rank]
        # Every rank learns every width, so a mismatch is the same error on every rank, not a hang.
        widths = _widths(int(local_hidden), group)
        if sum(widths) != global_hidden or min(widths) < 1:
            raise ValueError(
                f"rmsnorm.distributed: the ranks' widths {widths} must be >= 1 and add up to global_hidden = "
                f"{global_hidden}, but add up to {sum(widths)}"
            )
        self.global_hidden = int(global_hidden)
        self.local_hidden = int(local_hidden)
        self.column_begin = sum(widths[:rank])
        self.group = group
        self.eps = float(eps)
        self.p = float(p)
        self.eps_placement = eps_placement
        self.weight_offset = float(weight_offset)
        self.layer_norm = layer_norm
        if elementwise_affine:
            initial = 0.0 if weight_offset != 0 else 1.0
            self.weight = torch.nn.Parameter(torch.full((self.local_hidden,), initial, dtype=dtype))
            self.bias = torch.nn.Parameter(torch.zeros(self.local_hidden, dtype=dtype)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.local_hidden:
            raise ValueError(
                f"rmsnorm.distributed: input's last dimension is {x.shape[-1]}; this rank holds "
                f"{self.local_hidden} columns [{self.column_begin}, {self.column_begin + self.local_hidden}) of "
                f"{self.global_hidden}"
            )
        if self.weight is not None and self.weight.shape != (self.local_hidden,):
            raise ValueError(
                f"rmsnorm.distributed: weight has shape {tuple(self.weight.shape)}; expected this rank's width "
                f"({self.local_hidden},)"
            )
        return sharded_norm(x, self.global_hidden, self.column_begin, self.weight, self.bias, self.layer_norm,
                            self.eps, self.p, self.eps_placement, self.weight_offset, self.group)

    def extra_repr(self) -> str:
        return (f"global_hidden={self.global_hidden}, columns=[{self.column_begin}, "
                f"{self.column_begin + self.local_hidden}), eps={self.eps}, p={self.p}")


class ShardedRMSNorm(_ShardedNorm):
    """RMSNorm / pRMSNorm over a hidden dimension split across the group's ranks.

    k = ceil(global_hidden * p) counts over the global row: ranks whose columns lie past k
    contribute nothing to the statistic and still apply it.
    """

    def __init__(self, global_hidden: int, local_hidden: Optional[int] = None, group=None, eps: float = 1e-6,
                 p: float = 1.0, eps_placement: str = "inside", weight_offset: float = 0.0,
                 elementwise_affine: bool = True, dtype=None):
        super().__init__(global_hidden, local_hidden, group, eps, p, eps_placement, weight_offset, False,
                         elementwise_affine, False, dtype)


class ShardedLayerNorm(_ShardedNorm):
    """LayerNorm over a hidden dimension split across the group's ranks (two rounds of sums:
    the mean, then the centered squares; never E[x^2] - mean^2)."""

    def __init__(self, global_hidden: int, local_hidden: Optional[int] = None, group=None, eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, weight_offset: float = 0.0, dtype=None):
        super().__init__(global_hidden, local_hidden, group, eps, 1.0, "inside", weight_offset, True,
                         elementwise_affine, bias, dtype)


def allreduce_norm_gradients(module: torch.nn.Module, group=None, parameters: Optional[Sequence[str]] = None):
    """Sequence parallelism: sums the norm's weight (and bias) gradients over the group after backward.

    With the sequence split across ranks, each rank's norm sees only its tokens, so its weight
    gradient is a partial sum; Megatron all-reduces it. Call this after loss.backward() (or
    register it as a hook). Returns the names of the parameters it reduced.
    """
    names = list(parameters) if parameters is not None else [n for n, _ in module.named_parameters()]
    reduced = []
    for name, param in module.named_parameters():
        if name not in names or param.grad is None:
            continue
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM, group=group)
        reduced.append(name)
    return reduced
