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
    """Tests marked `cuda` need a GPU and a usable CUDA backend: skipped (reported as skipped,
    with the reason) otherwise. tools/gpu_check.sh counts a skip there as a failure."""
    if not torch.cuda.is_available():
        reason = "needs a CUDA device"
    else:
        from blfft import _ops

        why = _ops.cuda_unusable_reason()
        if why is None:
            return
        reason = f"blfft cannot use the GPU: {why}"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
