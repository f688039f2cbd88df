"""Functional forms of the ops: thin wrappers over torch.ops.rmsnorm.*."""
from typing import Optional, Sequence, Union

import torch

_Shape = Union[int, Sequence[int], torch.Size]


def _shape(normalized_shape: _Shape):
    if isinstance(normalized_shape, int):
        return [normalized_shape]
    return list(normalized_shape)


def rms_norm(
    input: torch.Tensor,
    normalized_shape: _Shape,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: Optional[float] = None,
    p: float = 1.0,
    eps_placement: str = "inside",
) -> torch.Tensor:
    """RMSNorm (p = 1) or pRMSNorm (p < 1) over the trailing normalized_shape dims.

    eps=None uses torch.finfo(input.dtype).eps, as torch.nn.functional.rms_norm does.
    eps_placement "inside": r = sqrt(mean(x^2) + eps); "outside": r = sqrt(mean(x^2)) + eps.
    """
    if eps is None:
        eps = torch.finfo(input.dtype).eps if input.is_floating_point() else 0.0
    if eps_placement not in ("inside", "outside"):
        raise ValueError(f'rmsnorm: eps_placement must be "inside" or "outside", got {eps_placement!r}')
    if not 0.0 < p <= 1.0:
        raise ValueError(f"rmsnorm: p must be in (0, 1], got {p}")
    return torch.ops.rmsnorm.rms_norm(input, _shape(normalized_shape), weight, bias, float(eps), float(p), eps_placement)


def layer_norm(
    input: torch.Tensor,
    normalized_shape: _Shape,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """LayerNorm with the same signature as torch.nn.functional.layer_norm."""
    return torch.ops.rmsnorm.layer_norm(input, _shape(normalized_shape), weight, bias, float(eps))


def fused_add_rms_norm(input: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> None:
    """In place, as vLLM's op: residual += input; input = rms_norm(residual) * weight (last dim).

    An inference op: not differentiable.
    """
    torch.ops.rmsnorm.fused_add_rms_norm(input, residual, weight, float(eps))
