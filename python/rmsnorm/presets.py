"""RMSNorm modules with the exact numerics of published model code (SPEC section 7).

Each preset fixes the two choices that decide the last bit of a 16-bit output: where the
result is rounded, and whether the gain is weight or 1 + weight.

    norm = rmsnorm.presets.llama(4096, eps=1e-5)   # Hugging Face LlamaRMSNorm's numbers

| preset | models (Hugging Face classes) | gain | rounding |
|---|---|---|---|
| llama | Llama, Mistral, Mixtral, Qwen2, Qwen3, Phi-3; PyTorch's F.rms_norm | weight | before_weight |
| gemma | Gemma, Gemma 2, Gemma 3 | 1 + weight | single |
| olmo2 | OLMo 2 | weight | single |
| t5 | T5LayerNorm | weight | before_weight (to the weight's dtype) |

`before_weight`: t = round_to_input_dtype(x / r), then y = round(t * weight): the published
`weight * hidden_states.to(input_dtype)`. `single`: everything in float32, one rounding at the
end: Gemma's `(output * (1.0 + weight.float())).type_as(x)`. float32 and float64 data are the
same under both. The weight must have the data's dtype for `before_weight` to mean what those
models compute (a float32 weight times a bfloat16 t gives a float32 result in PyTorch).
"""
from typing import Callable, Dict, Optional

from .modules import RMSNorm

__all__ = ["llama", "gemma", "olmo2", "t5", "PRESETS", "settings"]

# name -> the RMSNorm arguments that reproduce it (besides size and eps).
PRESETS: Dict[str, Dict[str, object]] = {
    "llama": {"weight_offset": 0.0, "rounding": "before_weight"},
    "gemma": {"weight_offset": 1.0, "rounding": "single"},
    "olmo2": {"weight_offset": 0.0, "rounding": "single"},
    "t5": {"weight_offset": 0.0, "rounding": "before_weight"},
}


def settings(name: str) -> Dict[str, object]:
    """The RMSNorm keyword arguments of a preset (a copy)."""
    if name not in PRESETS:
        raise ValueError(f"rmsnorm.presets: unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return dict(PRESETS[name])


def _factory(name: str, default_eps: float) -> Callable[..., RMSNorm]:
    def make(hidden_size: int, eps: Optional[float] = default_eps, device=None, dtype=None) -> RMSNorm:
        return RMSNorm(hidden_size, eps=eps, device=device, dtype=dtype, **settings(name))

    make.__name__ = name
    make.__doc__ = f"RMSNorm(hidden_size) with {name}'s numerics: {PRESETS[name]}; eps defaults to {default_eps}."
    return make


llama = _factory("llama", 1e-6)
gemma = _factory("gemma", 1e-6)
olmo2 = _factory("olmo2", 1e-6)
t5 = _factory("t5", 1e-6)
