"""rmsnorm.presets reproduce published model code bit for bit (SPEC section 7, issue 12), and
rmsnorm.convert swaps those models' RMSNorm classes for ours with the right preset."""
import copy

import pytest
import torch
from torch import nn

import rmsnorm

SIGNIFICANT_BITS = {torch.bfloat16: 8, torch.float16: 11}
MIN_NORMAL_EXPONENT = {torch.bfloat16: -126, torch.float16: -14}
NEAR = 2.0 ** -20  # SPEC section 7: within this (relative) of a rounding boundary, either neighbour


def round_exactly(v, dtype):
    """float64 v rounded to nearest-even in dtype (finite range), as float64, and whether v lies
    within 2^-20 (relative) of a rounding boundary."""
    _, e = torch.frexp(v)
    lead = torch.clamp(e.long() - 1, min=MIN_NORMAL_EXPONENT[dtype])
    ulp = torch.ldexp(torch.ones_like(v), lead - (SIGNIFICANT_BITS[dtype] - 1))
    q = v / ulp
    near = ((q - torch.floor(q)) - 0.5).abs() * ulp <= NEAR * v.abs()
    return torch.round(q) * ulp, near


def published_formula(preset, x, weight, eps):
    """Each model's formula in float64 with its roundings applied exactly: (y, near a boundary)."""
    dtype = x.dtype
    xd, wd = x.double(), weight.double()
    normalized = xd / torch.sqrt(xd.pow(2).mean(-1, keepdim=True) + eps)
    if preset in ("llama", "t5"):  # weight * round(x / r)
        t, near_t = round_exactly(normalized, dtype)
        # The product of two 16-bit values is exact in float32 as in float64: its rounding,
        # ties included, is the same on both sides, so no allowance there.
        y, _ = round_exactly(t * wd, dtype)
        return y, near_t
    if preset == "gemma":  # (x / r) * (1 + w), 1 + w in float32, one rounding
        gain = (1.0 + weight.float()).double()
        return round_exactly(normalized * gain, dtype)
    assert preset == "olmo2"  # (w * x / r) in float32, one rounding
    return round_exactly(normalized * wd, dtype)


# ---------------------------------------------------------------- the published modules, transcribed


class LlamaRMSNorm(nn.Module):  # Hugging Face transformers, models/llama
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class GemmaRMSNorm(nn.Module):  # models/gemma
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        output = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        output = output * (1.0 + self.weight.float())
        return output.type_as(x)


class Olmo2RMSNorm(LlamaRMSNorm):  # models/olmo2
    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return (self.weight * hidden_states).to(input_dtype)


class T5LayerNorm(LlamaRMSNorm):  # models/t5
    def forward(self, hidden_states):
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight.dtype in [torch.float16, torch.bfloat16]:
            hidden_states = hidden_states.to(self.weight.dtype)
        return self.weight * hidden_states


PUBLISHED = {"llama": LlamaRMSNorm, "gemma": GemmaRMSNorm, "olmo2": Olmo2RMSNorm, "t5": T5LayerNorm}


def inputs(dtype, preset, rows=512, n=1024, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, n, generator=g, dtype=torch.float64) * 3).to(dtype)
    spread = 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    weight = (spread if preset == "gemma" else 1 + spread).to(dtype)
    return x, weight


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("preset", ["llama", "gemma", "olmo2", "t5"])
def test_preset_equals_the_published_formula_bit_for_bit(preset, dtype):
    x, weight = inputs(dtype, preset)
    norm = getattr(rmsnorm.presets, preset)(x.shape[-1], eps=1e-6, dtype=dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
        ours = norm(x).double()
    expected, near = published_formula(preset, x, weight, 1e-6)
    mismatched = (ours != expected) & ~near
    assert not mismatched.any(), (
        f"{int(mismatched.sum())} elements differ away from a rounding boundary, first at "
        f"{mismatched.nonzero()[0].tolist()}")
    assert near.double().mean() < 0.01  # the allowance is rare, or the check would be empty

    # The published module run in PyTorch: the same but for summation order (a few per million).
    published = PUBLISHED[preset](x.shape[-1], eps=1e-6).to(dtype)
    with torch.no_grad():
        published.weight.copy_(weight)
        theirs = published(x).double()
    differ = int((theirs != ours).sum())
    print(f"{preset} {dtype}: {differ} of {ours.numel()} elements differ from the published module in PyTorch")
    assert differ <= ours.numel() * 1e-3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_two_rounding_orders_can_be_told_apart(dtype):
    x, weight = inputs(dtype, "llama", rows=64)
    before = rmsnorm.rms_norm(x, [x.shape[-1]], weight, eps=1e-6, rounding="before_weight")
    single = rmsnorm.rms_norm(x, [x.shape[-1]], weight, eps=1e-6, rounding="single")
    assert (before != single).double().mean() > 0.01


def test_float32_data_is_the_same_under_both_orders():
    x, weight = torch.randn(8, 64), torch.rand(64)
    assert torch.equal(rmsnorm.rms_norm(x, [64], weight, rounding="before_weight"),
                       rmsnorm.rms_norm(x, [64], weight, rounding="single"))


def test_presets_build_modules_with_their_settings():
    gemma = rmsnorm.presets.gemma(16)
    assert gemma.weight_offset == 1.0 and gemma.rounding == "single"
    assert torch.equal(gemma.weight, torch.zeros(16))  # gain 1 + 0, as Gemma initialises it
    assert rmsnorm.presets.llama(16).rounding == "before_weight"
    with pytest.raises(ValueError, match="unknown preset"):
        rmsnorm.presets.settings("bloom")


# ---------------------------------------------------------------- convert


class FooRMSNorm(nn.Module):  # an unknown class that looks like RMSNorm
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = 1e-5

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.input_layernorm = LlamaRMSNorm(n, eps=1e-5)
        self.q_norm = GemmaRMSNorm(n)
        self.post_norm = Olmo2RMSNorm(n)
        self.t5 = T5LayerNorm(n)
        self.other = FooRMSNorm(n)
        self.linear = nn.Linear(n, n)

    def forward(self, x):
        x = self.input_layernorm(x)
        x = self.linear(self.q_norm(x))
        return self.other(self.t5(self.post_norm(x)))


def test_convert_recognises_model_rmsnorm_classes_and_keeps_their_numbers():
    torch.manual_seed(0)
    model = Block(64).to(torch.bfloat16)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "weight") and not isinstance(module, nn.Linear):
                module.weight.add_(0.05 * torch.randn_like(module.weight))
    original = copy.deepcopy(model)

    planned = rmsnorm.convert(model, dry_run=True)
    assert isinstance(model.input_layernorm, LlamaRMSNorm), "dry_run must not change the model"
    notes = {c.name: c.note for c in planned}
    assert set(notes) == {"input_layernorm", "q_norm", "post_norm", "t5", "other"}
    assert "preset llama: known class LlamaRMSNorm" in notes["input_layernorm"]
    assert "preset gemma" in notes["q_norm"] and "preset olmo2" in notes["post_norm"] and "preset t5" in notes["t5"]
    assert "guessed for unknown class FooRMSNorm" in notes["other"]

    changes = rmsnorm.convert(model, presets_by_class={"FooRMSNorm": "olmo2"})
    assert [c.name for c in changes] == [c.name for c in planned]
    assert isinstance(model.q_norm, rmsnorm.RMSNorm) and model.q_norm.weight_offset == 1.0
    assert model.input_layernorm.eps == 1e-5 and model.input_layernorm.rounding == "before_weight"
    assert "chosen by the caller" in [c.note for c in changes if c.name == "other"][0]
    # Each known module gives its original's numbers but for summation order.
    x = (3 * torch.randn(256, 64)).to(torch.bfloat16)
    for name in ("input_layernorm", "q_norm", "post_norm", "t5"):
        with torch.no_grad():
            before, after = getattr(original, name)(x), getattr(model, name)(x)
        differ = int((after != before).sum())
        print(f"converted {name}: {differ} of {after.numel()} bfloat16 outputs differ from the original module")
        assert after.dtype == before.dtype and differ <= after.numel() * 1e-3, name


def test_convert_rejects_an_unknown_preset_override():
    with pytest.raises(ValueError, match="unknown preset"):
        rmsnorm.convert(Block(8), presets_by_class={"FooRMSNorm": "bloom"})
