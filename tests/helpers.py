"""Tolerances by dtype (one table) and the comparison rules every parity test uses."""
from __future__ import annotations

import os

import pytest
import torch

from vqfast.ops import triton_available

# (atol, rtol) for comparing a kernel against the reference computed in the same dtype.
TOL = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (1e-2, 1e-2),
    torch.float64: (1e-10, 1e-10),
}


def tol(dtype: torch.dtype) -> dict:
    atol, rtol = TOL[dtype]
    return {"atol": atol, "rtol": rtol}


def assert_close(actual, expected, dtype=None, **kw):
    dtype = dtype or expected.dtype
    opts = tol(dtype) if dtype in TOL else {}
    opts.update(kw)
    torch.testing.assert_close(actual, expected, **opts)


def assert_lowp_close(out: torch.Tensor, ref32: torch.Tensor, ref_lowp: torch.Tensor, atol: float = 1e-5,
                      name: str = "output"):
    """flash-attention's rule: |out - ref32| <= 2 |ref_lowp - ref32| + atol, elementwise."""
    out, ref32, ref_lowp = out.double(), ref32.double(), ref_lowp.double()
    err = (out - ref32).abs()
    bound = 2 * (ref_lowp - ref32).abs() + atol
    bad = err > bound
    if bad.any():
        i = int(bad.flatten().nonzero()[0])
        raise AssertionError(f"{name}: {int(bad.sum())}/{bad.numel()} elements exceed 2|ref_lowp-ref32|+atol; "
                             f"first at {i}: out={out.flatten()[i].item()}, ref32={ref32.flatten()[i].item()}, "
                             f"ref_lowp={ref_lowp.flatten()[i].item()}")


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def triton_runnable() -> bool:
    return triton_available() and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")


BACKENDS = [
    "torch",
    pytest.param("triton", marks=pytest.mark.skipif(not triton_runnable(),
                                                    reason="needs Triton with CUDA or TRITON_INTERPRET=1")),
]

gpu = pytest.mark.gpu  # skipped by conftest without CUDA
