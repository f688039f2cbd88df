"""Swaps a model's LayerNorm modules for RMSNorm (or for our LayerNorm)."""
from dataclasses import dataclass
from typing import List

import torch
from torch import nn

from .modules import LayerNorm, RMSNorm


@dataclass
class Change:
    name: str  # the module's qualified name in the model
    before: str  # repr of the replaced module
    after: str  # repr of the new module

    def __str__(self) -> str:
        return f"{self.name}: {self.before} -> {self.after}"


def convert(model: nn.Module, to: str = "rms", p: float = 1.0, keep_bias: bool = False) -> List[Change]:
    """Replaces every torch.nn.LayerNorm (and rmsnorm.LayerNorm) in `model`, in place.

    to="rms": RMSNorm with the same normalized_shape, eps and affine weight (p < 1: pRMSNorm).
      LayerNorm's bias is dropped unless keep_bias=True (RMSNorm then keeps it as its bias).
    to="layer": rmsnorm.LayerNorm, the same function computed by our engine (weights kept).
    Returns the list of changes, one per replaced module (empty if none).
    """
    if to not in ("rms", "layer"):
        raise ValueError(f'convert: to must be "rms" or "layer", got {to!r}')
    if not 0.0 < p <= 1.0:
        raise ValueError(f"convert: p must be in (0, 1], got {p}")
    changes: List[Change] = []
    targets = [(name, module) for name, module in model.named_modules() if isinstance(module, (nn.LayerNorm, LayerNorm))]
    for name, old in targets:
        if to == "layer" and isinstance(old, LayerNorm):
            continue
        weight = old.weight
        bias = old.bias
        factory = {"device": weight.device, "dtype": weight.dtype} if weight is not None else {}
        if to == "rms":
            new = RMSNorm(old.normalized_shape, eps=old.eps, elementwise_affine=old.elementwise_affine, p=p,
                          bias=keep_bias and bias is not None, **factory)
        else:
            new = LayerNorm(old.normalized_shape, eps=old.eps, elementwise_affine=old.elementwise_affine,
                            bias=bias is not None, **factory)
        with torch.no_grad():
            if weight is not None:
                new.weight.copy_(weight)
            if new.bias is not None and bias is not None:
                new.bias.copy_(bias)
        new.train(old.training)
        _set_submodule(model, name, new)
        changes.append(Change(name or "<root>", repr(old), repr(new)))
    return changes


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    if not name:
        raise ValueError("convert: the model itself is a LayerNorm; convert its parent instead")
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
