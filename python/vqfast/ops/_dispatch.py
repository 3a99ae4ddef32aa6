"""The one backend dispatch rule for every op and quantizer.

    backend = argument if not "auto" else $VQFAST_BACKEND if set else "auto"
    auto    -> "triton" for CUDA tensors when Triton imports, else "torch" (the reference)
    triton  -> Triton kernel; CPU tensors are allowed only under TRITON_INTERPRET=1
    torch   -> pure-PyTorch reference (same signature, same semantics)
"""
from __future__ import annotations

import functools
import os

import torch

from vqfast.errors import BackendError

BACKENDS = ("auto", "triton", "torch")


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True when `import triton` works (it never touches a GPU)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # ImportError, or a broken install raising at import
        return False
    return True


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_backend_name(backend: str) -> str:
    if backend not in BACKENDS:
        raise BackendError(f"backend={backend!r} is not one of {BACKENDS}")
    return backend


def resolve_backend(backend: str, *tensors: torch.Tensor, op: str) -> str:
    """Return "triton" or "torch" for this call of `op` on `tensors`."""
    check_backend_name(backend)
    if backend == "auto":
        env = os.environ.get("VQFAST_BACKEND", "auto").strip().lower() or "auto"
        if env not in BACKENDS:
            raise BackendError(f"VQFAST_BACKEND={env!r} is not one of {BACKENDS}")
        backend = env
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "auto":
        return "triton" if on_cuda and triton_available() else "torch"
    if backend == "triton":
        if not triton_available():
            raise BackendError(f"{op}: backend='triton' requested but Triton does not import; use 'torch' or 'auto'")
        if not on_cuda and not triton_interpret():
            devices = sorted({str(t.device) for t in tensors})
            raise BackendError(
                f"{op}: backend='triton' needs CUDA tensors (got {devices}); set TRITON_INTERPRET=1 to run the "
                "kernels on CPU through Triton's interpreter, or use backend='torch'/'auto'"
            )
    return backend
