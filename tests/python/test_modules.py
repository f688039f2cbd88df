"""rmsnorm.RMSNorm / LayerNorm as drop-ins, and convert() on a small Transformer."""
import pytest
import torch
from torch import nn

import rmsnorm


def test_rmsnorm_constructor_and_state_dict_match_torch_nn_rmsnorm():
    # torch.nn.RMSNorm (PyTorch 2.4+): weight of ones named "weight", no bias,
    # eps=None meaning finfo(dtype).eps at run time.
    norm = rmsnorm.RMSNorm([3, 4])
    assert norm.normalized_shape == (3, 4) and norm.eps is None and norm.elementwise_affine
    assert list(norm.state_dict().keys()) == ["weight"]
    assert torch.equal(norm.weight, torch.ones(3, 4))
    assert rmsnorm.RMSNorm(8, elementwise_affine=False).state_dict() == {}
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    expected = x / torch.sqrt(x.pow(2).mean((-2, -1), keepdim=True) + torch.finfo(torch.float64).eps)
    torch.testing.assert_close(rmsnorm.RMSNorm([3, 4], dtype=torch.float64)(x), expected, rtol=1e-13, atol=1e-13)
    if hasattr(nn, "RMSNorm"):  # PyTorch 2.4+: compare directly
        theirs = nn.RMSNorm([3, 4])
        assert norm.state_dict().keys() == theirs.state_dict().keys()


def test_layernorm_matches_torch_nn_layernorm():
    ours = rmsnorm.LayerNorm(16, eps=1e-6)
    theirs = nn.LayerNorm(16, eps=1e-6)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 16)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    assert list(rmsnorm.LayerNorm(16, bias=False).state_dict().keys()) == ["weight"]


def tiny_transformer():
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
    return nn.Sequential(nn.Linear(8, 32), nn.TransformerEncoder(layer, num_layers=2), nn.LayerNorm(32),
                         nn.Linear(32, 1))


@pytest.mark.parametrize("to,p", [("rms", 1.0), ("rms", 0.0625), ("layer", 1.0)])
def test_convert_keeps_weights_reports_changes_and_trains(to, p):
    model = tiny_transformer()
    layer_norms = [name for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)]
    with torch.no_grad():
        model[2].weight.mul_(1.5)
    changes = rmsnorm.convert(model, to=to, p=p)
    assert sorted(c.name for c in changes) == sorted(layer_norms)
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    expected_type = rmsnorm.RMSNorm if to == "rms" else rmsnorm.LayerNorm
    assert isinstance(model[2], expected_type)
    assert torch.allclose(model[2].weight, torch.full((32,), 1.5))
    if to == "rms":
        assert model[2].bias is None and model[2].p == p  # bias dropped unless asked

    x = torch.randn(16, 10, 8)
    target = x.sum(-1, keepdim=True).mean(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        out = model(x).mean(1)
        assert torch.isfinite(out).all()
        loss = (out - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_convert_keep_bias_and_no_layernorm():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    with torch.no_grad():
        model[1].bias.fill_(0.25)
    changes = rmsnorm.convert(model, keep_bias=True)
    assert len(changes) == 1 and "RMSNorm" in str(changes[0])
    assert torch.equal(model[1].bias, torch.full((4,), 0.25))
    assert rmsnorm.convert(nn.Sequential(nn.Linear(2, 2))) == []
