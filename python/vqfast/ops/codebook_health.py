"""codebook_health_: per-step codebook statistics and in-place health counters in one launch.

    perplexity       = exp(H(counts / n))           (taming's exp(-sum p log p), on this step's assignments)
    usage_perplexity = exp(H(usage_ema))            (EMA of the usage distribution: batch-size independent)
    active_codes     = #{j: counts_j > 0}
    dead_codes       = #{j: steps_unused_j >= dead_code_steps}   (after the update)
training=True also updates, in place: steps_unused_j <- 0 if counts_j > 0 else +1;
usage_ema <- d * usage_ema + (1 - d) * counts / n. Returns fp32[4] in that order, no host sync.
"""
from __future__ import annotations

import torch

from vqfast.errors import InputError
from vqfast.ops._checks import check_same_device, check_tensor
from vqfast.ops._dispatch import resolve_backend

METRICS = ("perplexity", "usage_perplexity", "active_codes", "dead_codes")


def _validate(counts, steps_unused, usage_ema, usage_decay, dead_code_steps):
    op = "codebook_health_"
    check_tensor(op, "counts", counts, ndim=1, dtypes=(torch.float32,))
    check_tensor(op, "steps_unused", steps_unused, ndim=1, dtypes=(torch.int64,))
    check_tensor(op, "usage_ema", usage_ema, ndim=1, dtypes=(torch.float32,))
    K = counts.shape[0]
    if K == 0 or steps_unused.shape[0] != K or usage_ema.shape[0] != K:
        raise InputError(f"{op}: counts, steps_unused and usage_ema need one equal length K >= 1, got "
                         f"{counts.shape[0]}, {steps_unused.shape[0]}, {usage_ema.shape[0]}")
    if not 0.0 <= usage_decay <= 1.0:
        raise InputError(f"{op}: usage_decay={usage_decay} must be in [0, 1]")
    if dead_code_steps < 1:
        raise InputError(f"{op}: dead_code_steps={dead_code_steps} must be >= 1")
    if not (counts.is_contiguous() and steps_unused.is_contiguous() and usage_ema.is_contiguous()):
        raise InputError(f"{op}: counts, steps_unused and usage_ema must be contiguous")
    check_same_device(op, counts=counts, steps_unused=steps_unused, usage_ema=usage_ema)


@torch.no_grad()
def codebook_health_reference_(counts: torch.Tensor, steps_unused: torch.Tensor, usage_ema: torch.Tensor, *,
                               training: bool, usage_decay: float = 0.99, dead_code_steps: int = 100,
                               backend: str = "auto") -> torch.Tensor:
    """Pure-PyTorch codebook_health_ (taming's perplexity formula plus vqfast's health counters)."""
    _validate(counts, steps_unused, usage_ema, usage_decay, dead_code_steps)
    n = counts.sum().clamp_min(1.0)
    p = counts / n
    if training:
        steps_unused.add_(1).masked_fill_(counts > 0, 0)
        usage_ema.mul_(usage_decay).add_(p, alpha=1.0 - usage_decay)
    u = usage_ema / usage_ema.sum().clamp_min(1e-30)

    def entropy(q):
        return -(q * torch.log(q.clamp_min(1e-30))).sum()

    return torch.stack([torch.exp(entropy(p)), torch.exp(entropy(u)), (counts > 0).sum().float(),
                        (steps_unused >= dead_code_steps).sum().float()])


def codebook_health_(counts: torch.Tensor, steps_unused: torch.Tensor, usage_ema: torch.Tensor, *,
                     training: bool, usage_decay: float = 0.99, dead_code_steps: int = 100,
                     backend: str = "auto") -> torch.Tensor:
    """See module docstring. counts fp32[K]; steps_unused int64[K]; usage_ema fp32[K] -> fp32[4]."""
    _validate(counts, steps_unused, usage_ema, usage_decay, dead_code_steps)
    be = resolve_backend(backend, counts, steps_unused, usage_ema, op="codebook_health_")
    if be == "torch":
        return codebook_health_reference_(counts, steps_unused, usage_ema, training=training,
                                          usage_decay=usage_decay, dead_code_steps=dead_code_steps)
    from vqfast.kernels.codebook_health import codebook_health_fwd

    return codebook_health_fwd(counts, steps_unused, usage_ema, bool(training), float(usage_decay),
                               int(dead_code_steps))
