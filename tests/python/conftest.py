"""Makes the source tree's python/ importable and seeds every test."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(20191208)
