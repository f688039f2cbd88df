"""nn.Module forms. RMSNorm's constructor and state_dict match torch.nn.RMSNorm
(PyTorch 2.4+) for the common arguments; LayerNorm's match torch.nn.LayerNorm."""
import numbers
from typing import List, Optional, Sequence, Union

import torch
from torch import nn


_Shape = Union[int, Sequence[int], torch.Size]


def _as_tuple(normalized_shape: _Shape):
    if isinstance(normalized_shape, numbers.Integral):
        return (int(normalized_shape),)
    return tuple(int(d) for d in normalized_shape)


def _register_affine(module: nn.Module, elementwise_affine: bool, bias: bool, factory) -> None:
    """Registers `weight` (and `bias` when asked) of module.normalized_shape, as torch.nn's norms do."""
    shape = module.normalized_shape
    module.register_parameter("weight", nn.Parameter(torch.empty(shape, **factory)) if elementwise_affine else None)
    module.register_parameter("bias", nn.Parameter(torch.empty(shape, **factory)) if elementwise_affine and bias else None)


def _reset_affine(module: nn.Module) -> None:
    if module.weight is not None:
        nn.init.ones_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class RMSNorm(nn.Module):
    """y = x / RMS(x) * weight (+ bias), RMS over the trailing normalized_shape dims.

    p < 1 estimates the RMS from the first ceil(n * p) elements (pRMSNorm).
    eps=None uses torch.finfo(x.dtype).eps at run time, as torch.nn.RMSNorm does.
    weight_offset: the gain is weight_offset + weight (Gemma stores weight - 1 and uses 1).
    rounding: "single" or "before_weight" for bfloat16/float16 data (see rmsnorm.presets).
    """

    __constants__ = ["normalized_shape", "eps", "elementwise_affine", "p", "eps_placement", "weight_offset",
                     "rounding"]

    def __init__(
        self,
        normalized_shape: _Shape,
        eps: Optional[float] = None,
        elementwise_affine: bool = True,
        p: float = 1.0,
        eps_placement: str = "inside",
        bias: bool = False,
        device=None,
        dtype=None,
        weight_offset: float = 0.0,
        rounding: str = "single",
    ) -> None:
        super().__init__()
        if rounding not in ("single", "before_weight"):
            raise ValueError(f'RMSNorm: rounding must be "single" or "before_weight", got {rounding!r}')
        if weight_offset != 0.0 and not elementwise_affine:
            raise ValueError("RMSNorm: weight_offset needs elementwise_affine=True (the gain is offset + weight)")
        if not 0.0 < p <= 1.0:
            raise ValueError(f"RMSNorm: p must be in (0, 1], got {p}")
        if eps_placement not in ("inside", "outside"):
            raise ValueError(f'RMSNorm: eps_placement must be "inside" or "outside", got {eps_placement!r}')
        if eps is not None and not eps >= 0:
            raise ValueError(f"RMSNorm: eps must be >= 0 or None, got {eps}")
        self.normalized_shape = _as_tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.p = p
        self.eps_placement = eps_placement
        self.weight_offset = float(weight_offset)
        self.rounding = rounding
        _register_affine(self, elementwise_affine, bias, {"device": device, "dtype": dtype})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self)
        if self.weight is not None and self.weight_offset != 0.0:
            nn.init.constant_(self.weight, 1.0 - self.weight_offset)  # a gain of 1 to start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The op itself (not F.rms_norm) so that torch.jit.script compiles the module.
        return torch.ops.rmsnorm.rms_norm(x, list(self.normalized_shape), self.weight, self.bias, self.eps, self.p,
                                          self.eps_placement, self.weight_offset, self.rounding)

    def extra_repr(self) -> str:
        text = f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        if self.p != 1.0:
            text += f", p={self.p}"
        if self.eps_placement != "inside":
            text += f", eps_placement={self.eps_placement!r}"
        if self.weight_offset != 0.0:
            text += f", weight_offset={self.weight_offset}"
        if self.rounding != "single":
            text += f", rounding={self.rounding!r}"
        return text


class LayerNorm(nn.Module):
    """torch.nn.LayerNorm's interface, computed by the rmsnorm engine."""

    __constants__ = ["normalized_shape", "eps", "elementwise_affine"]

    def __init__(
        self,
        normalized_shape: _Shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.normalized_shape = _as_tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _register_affine(self, elementwise_affine, bias, {"device": device, "dtype": dtype})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.rmsnorm.layer_norm(x, list(self.normalized_shape), self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


__all__: List[str] = ["RMSNorm", "LayerNorm"]
