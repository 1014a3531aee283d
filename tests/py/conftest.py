import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # reference.py, helpers.py


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same RNG state."""
    torch.manual_seed(1234)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
