"""Codebook health in one launch: perplexity of this step's assignments, EMA usage perplexity,
active and dead code counts, plus the in-place update of the per-code unused-step counters and the
usage EMA. Matches `vqfast.ops.reference.codebook_health_`.

Single program walking K in BLOCK_K chunks, fp32 accumulators. Entropies use the one-pass identity
    H(c / n) = log n - (1/n) sum_j c_j log c_j        (n = sum_j c_j, 0 log 0 = 0)
so no normalisation pass is needed. Limits: K < 2^31; counts exact below 2^24 per code.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _codebook_health_kernel(
    counts_ptr,   # (K,) fp32 assignments this step
    unused_ptr,   # (K,) int64 in/out steps since each code was last used
    usage_ptr,    # (K,) fp32 in/out EMA of the usage distribution
    out_ptr,      # (4,) fp32 out: perplexity, usage_perplexity, active_codes, dead_codes
    K, usage_decay, dead_steps,
    TRAINING: tl.constexpr, BLOCK_K: tl.constexpr,
):
    offs = tl.arange(0, BLOCK_K)
    # pass 1: n = sum(counts) (needed for the usage EMA, which mixes in counts / n)
    acc_n = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        acc_n += tl.load(counts_ptr + k0 + offs, mask=(k0 + offs) < K, other=0.0)
    n = tl.maximum(tl.sum(acc_n, axis=0), 1.0)
    acc_clogc = tl.zeros((BLOCK_K,), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_K,), dtype=tl.float32)
    acc_ulogu = tl.zeros((BLOCK_K,), dtype=tl.float32)
    acc_active = tl.zeros((BLOCK_K,), dtype=tl.float32)
    acc_dead = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + offs
        mk = rk < K
        c = tl.load(counts_ptr + rk, mask=mk, other=0.0)
        unused = tl.load(unused_ptr + rk, mask=mk, other=0)
        u = tl.load(usage_ptr + rk, mask=mk, other=0.0)
        if TRAINING:
            unused = tl.where(c > 0, 0, unused + 1)
            u = usage_decay * u + (1.0 - usage_decay) * (c / n)
            tl.store(unused_ptr + rk, unused, mask=mk)
            tl.store(usage_ptr + rk, u, mask=mk)
        acc_clogc += tl.where(c > 0, c * tl.log(tl.maximum(c, 1e-30)), 0.0)
        acc_u += u
        acc_ulogu += tl.where(u > 0, u * tl.log(tl.maximum(u, 1e-30)), 0.0)
        acc_active += tl.where(mk & (c > 0), 1.0, 0.0)
        acc_dead += tl.where(mk & (unused >= dead_steps), 1.0, 0.0)
    total_u = tl.maximum(tl.sum(acc_u, axis=0), 1e-30)
    h = tl.log(n) - tl.sum(acc_clogc, axis=0) / n
    hu = tl.log(total_u) - tl.sum(acc_ulogu, axis=0) / total_u
    tl.store(out_ptr + 0, tl.exp(h))
    tl.store(out_ptr + 1, tl.exp(hu))
    tl.store(out_ptr + 2, tl.sum(acc_active, axis=0))
    tl.store(out_ptr + 3, tl.sum(acc_dead, axis=0))


def codebook_health_fwd(counts, steps_unused, usage_ema, training: bool, usage_decay: float,
                        dead_code_steps: int) -> torch.Tensor:
    out = torch.empty(4, dtype=torch.float32, device=counts.device)
    bk = 64 if _INTERPRET else 2048
    _codebook_health_kernel[(1,)](counts, steps_unused, usage_ema, out, counts.shape[0], usage_decay,
                                  dead_code_steps, TRAINING=training, BLOCK_K=bk, num_warps=8)
    return out
