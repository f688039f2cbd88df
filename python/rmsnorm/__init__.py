"""rmsnorm: RMSNorm, pRMSNorm and LayerNorm for PyTorch, computed by the rmsnorm C++ engine.

    import rmsnorm
    norm = rmsnorm.RMSNorm(768)                  # like torch.nn.RMSNorm
    y = rmsnorm.rms_norm(x, [768], weight, eps=1e-6, p=0.0625)
    changes = rmsnorm.convert(model, to="rms")   # LayerNorm -> RMSNorm, in place
"""
from ._library import load_library

load_library()

from .convert import Change, convert  # noqa: E402
from .functional import fused_add_rms_norm, layer_norm, rms_norm  # noqa: E402
from .modules import LayerNorm, RMSNorm  # noqa: E402

__all__ = ["RMSNorm", "LayerNorm", "rms_norm", "layer_norm", "fused_add_rms_norm", "convert", "Change"]
