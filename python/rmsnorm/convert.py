"""Swaps a model's norm modules for ours: LayerNorm for RMSNorm (or for our LayerNorm), and the
RMSNorm classes of published model code for our RMSNorm with the matching preset."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from . import presets
from .modules import LayerNorm, RMSNorm


@dataclass
class Change:
    name: str  # the module's qualified name in the model
    before: str  # repr of the replaced module
    after: str  # repr of the new module
    note: str = ""  # why this replacement (e.g. which preset, and how it was chosen)

    def __str__(self) -> str:
        text = f"{self.name}: {self.before} -> {self.after}"
        return f"{text}  [{self.note}]" if self.note else text


# Class-name fragments of known RMSNorm implementations -> preset, first match wins.
_KNOWN: Tuple[Tuple[str, str], ...] = (
    ("Gemma", "gemma"),
    ("Olmo2", "olmo2"),
    ("T5", "t5"),
    ("Llama", "llama"),
    ("Mistral", "llama"),
    ("Mixtral", "llama"),
    ("Qwen", "llama"),
    ("Phi3", "llama"),
)


def _rms_like(module: nn.Module) -> bool:
    """A module from model code that computes RMSNorm: class name ending in RMSNorm (or T5's
    T5LayerNorm), a weight, and an eps or variance_epsilon. Ours are excluded."""
    if isinstance(module, (RMSNorm, LayerNorm, nn.LayerNorm)):
        return False
    name = type(module).__name__
    named_like = name.endswith("RMSNorm") or name.endswith("T5LayerNorm")
    has_eps = hasattr(module, "eps") or hasattr(module, "variance_epsilon")
    weight = getattr(module, "weight", None)
    return named_like and has_eps and isinstance(weight, torch.Tensor)


def preset_for(module: nn.Module) -> Tuple[str, str]:
    """(preset, how it was chosen) for an RMSNorm-like module."""
    name = type(module).__name__
    for fragment, preset in _KNOWN:
        if fragment in name:
            return preset, f"preset {preset}: known class {name}"
    if name == "RMSNorm" and type(module).__module__.startswith("torch.nn"):
        return "llama", "preset llama: torch.nn.RMSNorm rounds as F.rms_norm does"
    return "llama", f"preset llama: guessed for unknown class {name} (Hugging Face's LlamaRMSNorm formula, " \
                    f"which most models copy); pass presets={{'{name}': ...}} to choose"


def convert(model: nn.Module, to: str = "rms", p: float = 1.0, keep_bias: bool = False, dry_run: bool = False,
            rms_like: bool = True, presets_by_class: Optional[Dict[str, str]] = None) -> List[Change]:
    """Replaces norm modules in `model`, in place, and returns one Change per replacement.

    to="rms": every torch.nn.LayerNorm (and rmsnorm.LayerNorm) becomes RMSNorm with the same
      normalized_shape, eps and affine weight (p < 1: pRMSNorm); LayerNorm's bias is dropped
      unless keep_bias=True (RMSNorm then keeps it as its bias).
    to="layer": rmsnorm.LayerNorm, the same function computed by our engine (weights kept).
    rms_like=True: RMSNorm modules of model code (class name ending in RMSNorm, or T5LayerNorm,
      with a weight and an eps or variance_epsilon) become our RMSNorm with the preset that
      reproduces their numerics (rmsnorm.presets), weights kept; presets_by_class maps a class
      name to a preset to override the choice.
    dry_run=True: changes nothing and returns what would change.
    """
    if to not in ("rms", "layer"):
        raise ValueError(f'convert: to must be "rms" or "layer", got {to!r}')
    if not 0.0 < p <= 1.0:
        raise ValueError(f"convert: p must be in (0, 1], got {p}")
    overrides = dict(presets_by_class or {})
    for preset in overrides.values():
        presets.settings(preset)  # raises on an unknown preset name
    changes: List[Change] = []
    for name, old in list(model.named_modules()):
        if isinstance(old, (nn.LayerNorm, LayerNorm)):
            if to == "layer" and isinstance(old, LayerNorm):
                continue
            new, note = _from_layer_norm(old, to, p, keep_bias)
        elif rms_like and _rms_like(old):
            new, note = _from_rms_like(old, overrides)
        else:
            continue
        if not dry_run:
            _set_submodule(model, name, new)
        changes.append(Change(name or "<root>", repr(old), repr(new), note))
    return changes


def _factory(weight: Optional[torch.Tensor]) -> dict:
    return {"device": weight.device, "dtype": weight.dtype} if weight is not None else {}


def _copy_parameters(new: nn.Module, weight, bias) -> None:
    with torch.no_grad():
        if weight is not None and new.weight is not None:
            new.weight.copy_(weight)
        if bias is not None and getattr(new, "bias", None) is not None:
            new.bias.copy_(bias)


def _from_layer_norm(old: nn.Module, to: str, p: float, keep_bias: bool) -> Tuple[nn.Module, str]:
    weight, bias = old.weight, old.bias
    if to == "rms":
        new = RMSNorm(old.normalized_shape, eps=old.eps, elementwise_affine=old.elementwise_affine, p=p,
                      bias=keep_bias and bias is not None, **_factory(weight))
        note = "LayerNorm -> RMSNorm" + ("" if bias is None or keep_bias else " (bias dropped)")
    else:
        new = LayerNorm(old.normalized_shape, eps=old.eps, elementwise_affine=old.elementwise_affine,
                        bias=bias is not None, **_factory(weight))
        note = "LayerNorm -> rmsnorm.LayerNorm"
    _copy_parameters(new, weight, bias)
    new.train(old.training)
    return new, note


def _from_rms_like(old: nn.Module, overrides: Dict[str, str]) -> Tuple[nn.Module, str]:
    class_name = type(old).__name__
    if class_name in overrides:
        preset, note = overrides[class_name], f"preset {overrides[class_name]}: chosen by the caller for {class_name}"
    else:
        preset, note = preset_for(old)
    eps = getattr(old, "variance_epsilon", getattr(old, "eps", None))
    weight = old.weight
    shape = tuple(getattr(old, "normalized_shape", None) or weight.shape)
    bias = getattr(old, "bias", None)
    has_bias = isinstance(bias, torch.Tensor)
    new = RMSNorm(shape, eps=eps, bias=has_bias, **_factory(weight), **presets.settings(preset))
    _copy_parameters(new, weight, bias if has_bias else None)
    new.train(old.training)
    return new, note


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    if not name:
        raise ValueError("convert: the model itself is a norm module; convert its parent instead")
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
