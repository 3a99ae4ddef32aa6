"""Test-session setup shared by every suite.

Without CUDA, Triton kernels run through Triton's CPU interpreter so their parity tests exercise the
real kernel code: TRITON_INTERPRET must be set before any @triton.jit function is defined, i.e. before
vqfast.kernels is imported, which only happens lazily inside the ops. Nothing here touches a GPU.
"""
import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py


def pytest_collection_modifyitems(config, items):
    import pytest

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
