"""Argument validation shared by the ops: metadata checks are free; the finiteness check syncs the host."""
from __future__ import annotations

import torch

from vqfast.errors import InputError

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_tensor(op: str, name: str, t, *, ndim: int | None = None, min_ndim: int | None = None,
                 dtypes=FLOAT_DTYPES) -> None:
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise InputError(f"{op}: {name} must have {ndim} dims, got shape {tuple(t.shape)}")
    if min_ndim is not None and t.dim() < min_ndim:
        raise InputError(f"{op}: {name} must have at least {min_ndim} dims, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise InputError(f"{op}: {name} has dtype {str(t.dtype).replace('torch.', '')}; allowed: {allowed}")


def check_same_device(op: str, **tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        desc = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise InputError(f"{op}: all tensors must be on one device, got {desc}")


def check_finite(op: str, **tensors: torch.Tensor) -> None:
    """Raise InputError naming the first argument that holds NaN or Inf (one host sync per tensor)."""
    for name, t in tensors.items():
        if t is not None and t.numel() and not bool(torch.isfinite(t).all()):
            bad = (~torch.isfinite(t)).sum().item()
            raise InputError(f"{op}: {name} holds {bad} non-finite value(s) (NaN or Inf); all values must be finite")
