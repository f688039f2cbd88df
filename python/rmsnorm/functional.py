"""Functional forms of the ops: thin wrappers over torch.ops.rmsnorm.*.

Every op goes through PyTorch's dispatcher (CPU and Meta kernels, an Autograd kernel that calls
the matching backward op), so these work on meta tensors and under torch.jit, torch.fx and
autocast. The arguments are checked by the ops themselves, with the same messages from Python
and C++.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch

_Shape = Union[int, Sequence[int], torch.Size]

__all__ = ["rms_norm", "rms_norm_", "layer_norm", "layer_norm_", "add_rms_norm", "gated_rms_norm",
           "fused_add_rms_norm"]


def _shape(normalized_shape: _Shape) -> List[int]:
    if isinstance(normalized_shape, int):
        return [normalized_shape]
    return list(normalized_shape)


def _check_choices(eps_placement: str, p: float, rounding: str) -> None:
    # ValueError for Python callers; the op raises RuntimeError with the same words.
    if eps_placement not in ("inside", "outside"):
        raise ValueError(f'rmsnorm: eps_placement must be "inside" or "outside", got {eps_placement!r}')
    if not 0.0 < p <= 1.0:
        raise ValueError(f"rmsnorm: p must be in (0, 1], got {p}")
    if rounding not in ("single", "before_weight"):
        raise ValueError(f'rmsnorm: rounding must be "single" or "before_weight", got {rounding!r}')


def rms_norm(
    input: torch.Tensor,
    normalized_shape: _Shape,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: Optional[float] = None,
    p: float = 1.0,
    eps_placement: str = "inside",
    weight_offset: float = 0.0,
    rounding: str = "single",
    *,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """RMSNorm (p = 1) or pRMSNorm (p < 1) over the trailing normalized_shape dims.

    y = x / r * (weight_offset + weight) + bias.
    eps=None uses torch.finfo(input.dtype).eps, as torch.nn.functional.rms_norm does.
    eps_placement "inside": r = sqrt(mean(x^2) + eps); "outside": r = sqrt(mean(x^2)) + eps.
    rounding (bfloat16/float16 data): "single" rounds once at the end (Gemma, OLMo2);
    "before_weight" rounds x / r to the data dtype before the weight (Llama, PyTorch's F.rms_norm).
    out=: writes into `out` (an inference form: no gradient).
    """
    _check_choices(eps_placement, p, rounding)
    eps = None if eps is None else float(eps)
    shape = _shape(normalized_shape)
    if out is not None:
        return torch.ops.rmsnorm.rms_norm(input, shape, weight, bias, eps, float(p), eps_placement,
                                          float(weight_offset), rounding, out=out)
    return torch.ops.rmsnorm.rms_norm(input, shape, weight, bias, eps, float(p), eps_placement, float(weight_offset),
                                      rounding)


def rms_norm_(
    input: torch.Tensor,
    normalized_shape: _Shape,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: Optional[float] = None,
    p: float = 1.0,
    eps_placement: str = "inside",
    weight_offset: float = 0.0,
    rounding: str = "single",
) -> torch.Tensor:
    """rms_norm in place (input contiguous); an inference form: no gradient."""
    _check_choices(eps_placement, p, rounding)
    eps = None if eps is None else float(eps)
    return torch.ops.rmsnorm.rms_norm_(input, _shape(normalized_shape), weight, bias, eps, float(p), eps_placement,
                                       float(weight_offset), rounding)


def layer_norm(
    input: torch.Tensor,
    normalized_shape: _Shape,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: float = 1e-5,
    weight_offset: float = 0.0,
    rounding: str = "single",
    *,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """LayerNorm with the signature of torch.nn.functional.layer_norm (plus weight_offset, rounding, out=)."""
    _check_choices("inside", 1.0, rounding)
    shape = _shape(normalized_shape)
    if out is not None:
        return torch.ops.rmsnorm.layer_norm(input, shape, weight, bias, float(eps), float(weight_offset), rounding,
                                            out=out)
    return torch.ops.rmsnorm.layer_norm(input, shape, weight, bias, float(eps), float(weight_offset), rounding)


def layer_norm_(
    input: torch.Tensor,
    normalized_shape: _Shape,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: float = 1e-5,
    weight_offset: float = 0.0,
    rounding: str = "single",
) -> torch.Tensor:
    """layer_norm in place (input contiguous); an inference form: no gradient."""
    _check_choices("inside", 1.0, rounding)
    return torch.ops.rmsnorm.layer_norm_(input, _shape(normalized_shape), weight, bias, float(eps),
                                         float(weight_offset), rounding)


def add_rms_norm(
    input: torch.Tensor,
    residual: torch.Tensor,
    normalized_shape: _Shape,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: Optional[float] = None,
    p: float = 1.0,
    eps_placement: str = "inside",
    weight_offset: float = 0.0,
    rounding: str = "single",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The fused residual add of a pre-norm transformer block, differentiable (SPEC section 8).

    h = input + residual (rounded to their dtype), y = rms_norm(h). Returns (y, h): h is the
    new residual stream. Gradients reach input, residual, weight and bias; residual itself is
    not modified.
    """
    _check_choices(eps_placement, p, rounding)
    eps = None if eps is None else float(eps)
    y, h = torch.ops.rmsnorm.add_rms_norm(input, residual, _shape(normalized_shape), weight, bias, eps, float(p),
                                          eps_placement, float(weight_offset), rounding)
    return y, h


def gated_rms_norm(
    input: torch.Tensor,
    z: Optional[torch.Tensor] = None,
    weight: Optional[torch.Tensor] = None,
    group_size: int = 0,
    gate: str = "none",
    eps: Optional[float] = None,
    eps_placement: str = "inside",
    weight_offset: float = 0.0,
) -> torch.Tensor:
    """Gated and grouped RMSNorm over the last dimension (SPEC section 10), CPU tensors.

    group_size: columns per group, each group with its own RMS (0: the whole row).
    gate: "none"; "before": norm(x * silu(z)) * weight (Mamba-2 with norm_before_gate=False);
    "after": norm(x) * weight * silu(z) (Mamba-2's default, Qwen3-Next).
    """
    if gate not in ("none", "before", "after"):
        raise ValueError(f'rmsnorm: gate must be "none", "before" or "after", got {gate!r}')
    _check_choices(eps_placement, 1.0, "single")
    eps = None if eps is None else float(eps)
    return torch.ops.rmsnorm.gated_rms_norm(input, z, weight, int(group_size), gate, eps, eps_placement,
                                            float(weight_offset))


def fused_add_rms_norm(input: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> None:
    """In place, as vLLM's op: residual += input; input = rms_norm(residual) * weight (last dim).

    An inference op: it raises if an input requires grad (use add_rms_norm for training).
    """
    torch.ops.rmsnorm.fused_add_rms_norm(input, residual, weight, float(eps))
