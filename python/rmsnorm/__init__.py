"""rmsnorm: RMSNorm, pRMSNorm and LayerNorm for PyTorch, computed by the rmsnorm C++ engine.

    import rmsnorm
    norm = rmsnorm.RMSNorm(768)                  # like torch.nn.RMSNorm
    y = rmsnorm.rms_norm(x, [768], weight, eps=1e-6, p=0.0625)
    changes = rmsnorm.convert(model, to="rms")   # LayerNorm -> RMSNorm, in place
    norm = rmsnorm.presets.llama(4096)          # Hugging Face LlamaRMSNorm's exact numerics
"""
from ._library import load_library

load_library()

from .convert import Change, convert  # noqa: E402
from .functional import (  # noqa: E402
    add_rms_norm,
    fused_add_rms_norm,
    gated_rms_norm,
    layer_norm,
    layer_norm_,
    rms_norm,
    rms_norm_,
)
from .modules import LayerNorm, RMSNorm  # noqa: E402
from . import presets  # noqa: E402

__all__ = ["RMSNorm", "LayerNorm", "rms_norm", "rms_norm_", "layer_norm", "layer_norm_", "add_rms_norm",
           "gated_rms_norm", "fused_add_rms_norm", "convert", "Change", "presets"]
