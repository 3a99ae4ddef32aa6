"""Small helpers every task shares: autocast choice, gradient clipping, routing the discriminator through DDP."""
from __future__ import annotations

import contextlib

import torch


def autocast_for(cfg, device: torch.device):
    """bf16 autocast when train.precision is 'bf16', else a no-op context."""
    if cfg.train.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def clip_grads(params, max_norm: float) -> None:
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


@contextlib.contextmanager
def swap_attr(owner, name: str, value):
    """Temporarily set owner.name = value (no-op when value is None), e.g. a DDP-wrapped discriminator for
    the D step only, so the frozen G-step call stays unwrapped."""
    if value is None:
        yield
        return
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)
