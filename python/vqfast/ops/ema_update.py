"""ema_update_: in-place EMA codebook update (Triton segment sums + fused EMA pass, torch reference).

Semantics of taming's EMAVectorQuantizer / EmbeddingEMA (Sonnet VQ-VAE EMA form), SPEC §7.3:
    counts_j = #{i: idx_i = j};  sums_j = sum_{i: idx_i = j} z_i
    cluster_size <- decay * cluster_size + (1 - decay) * counts
    embed_avg    <- decay * embed_avg    + (1 - decay) * sums
    n = sum(cluster_size);  smoothed = (cluster_size + eps) / (n + K * eps) * n   (cluster_size keeps the raw EMA)
    weight       <- embed_avg / smoothed[:, None]
The codebook used to pick idx is the pre-update one (the caller's business). EMA state is fp32.

DDP: `reduce_hook(stats)` receives ONE fp32 (K, D+1) buffer (sums in [:, :D], counts in [:, D]) before
the EMA and must reduce it in place (e.g. `torch.distributed.all_reduce`), so all ranks stay identical.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from vqfast.errors import InputError
from vqfast.ops._checks import check_finite as _check_finite
from vqfast.ops._checks import check_same_device, check_tensor
from vqfast.ops._dispatch import resolve_backend

ReduceHook = Optional[Callable[[torch.Tensor], None]]


def _validate(cluster_size, embed_avg, weight, z, idx, decay, eps, check_values):
    op = "ema_update_"
    check_tensor(op, "cluster_size", cluster_size, ndim=1, dtypes=(torch.float32,))
    check_tensor(op, "embed_avg", embed_avg, ndim=2, dtypes=(torch.float32,))
    check_tensor(op, "weight", weight, ndim=2)
    check_tensor(op, "z", z, ndim=2)
    check_tensor(op, "idx", idx, ndim=1, dtypes=(torch.int64, torch.int32))
    K, D = embed_avg.shape
    if K == 0:
        raise InputError(f"{op}: the codebook is empty (embed_avg shape {tuple(embed_avg.shape)}); K must be >= 1")
    if tuple(weight.shape) != (K, D):
        raise InputError(f"{op}: weight has shape {tuple(weight.shape)}, embed_avg has {(K, D)}; they must match")
    if cluster_size.shape[0] != K:
        raise InputError(f"{op}: cluster_size has {cluster_size.shape[0]} entries, the codebook has K={K}")
    if z.shape[1] != D:
        raise InputError(f"{op}: z has D={z.shape[1]}, the codebook has D={D}")
    if z.shape[0] == 0:
        raise InputError(f"{op}: z has no rows (shape {tuple(z.shape)}); an EMA step needs N >= 1")
    if idx.shape[0] != z.shape[0]:
        raise InputError(f"{op}: idx has {idx.shape[0]} entries but z has N={z.shape[0]} rows")
    if not (0.0 <= float(decay) <= 1.0):
        raise InputError(f"{op}: decay={decay} must be in [0, 1]")
    if not float(eps) > 0.0:
        raise InputError(f"{op}: eps={eps} must be > 0")
    if not (cluster_size.is_contiguous() and embed_avg.stride(1) == 1 and weight.stride(1) == 1):
        raise InputError(f"{op}: cluster_size must be contiguous and embed_avg/weight must have unit column stride")
    check_same_device(op, cluster_size=cluster_size, embed_avg=embed_avg, weight=weight, z=z, idx=idx)
    if check_values:
        _check_finite(op, z=z)
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= K:
            raise InputError(f"{op}: idx holds values in [{lo}, {hi}]; allowed range is [0, {K - 1}]")


def _reference_stats(z: torch.Tensor, idx: torch.Tensor, K: int, deterministic: bool) -> torch.Tensor:
    """fp32 (K, D+1): per-code sums of z rows and (column D) counts."""
    N, D = z.shape
    idx = idx.long()
    stats = torch.zeros(K, D + 1, dtype=torch.float32, device=z.device)
    # No bincount: on CUDA it reads max(idx) on the host to size its output (a sync every step).
    if deterministic and z.is_cuda:
        # CUDA index_add_ uses float atomics; sorted fp64 prefix sums are order-fixed instead.
        sorted_idx, order = torch.sort(idx, stable=True)
        prefix = torch.zeros(N + 1, D, dtype=torch.float64, device=z.device)
        torch.cumsum(z.index_select(0, order).double(), dim=0, out=prefix[1:])
        starts = torch.searchsorted(sorted_idx, torch.arange(K + 1, device=z.device))
        stats[:, :D] = (prefix[starts[1:]] - prefix[starts[:-1]]).float()
        stats[:, D] = (starts[1:] - starts[:-1]).float()
    else:
        stats[:, :D].index_add_(0, idx, z.float())
        # adding exact 1.0s: the count is exact (< 2^24) in any atomic order
        stats[:, D].index_add_(0, idx, torch.ones(N, dtype=torch.float32, device=z.device))
    return stats


@torch.no_grad()
def ema_update_reference_(cluster_size: torch.Tensor, embed_avg: torch.Tensor, weight: torch.Tensor,
                          z: torch.Tensor, idx: torch.Tensor, *, decay: float, eps: float,
                          backend: str = "auto", deterministic: bool = False, reduce_hook: ReduceHook = None,
                          check_values: bool = True) -> None:
    """Pure-PyTorch ema_update_ (taming EmbeddingEMA.cluster_size_ema_update / embed_avg_ema_update /
    weight_update, with index_add_ sums and counts instead of the N x K one-hot; no host sync). Same
    signature."""
    _validate(cluster_size, embed_avg, weight, z, idx, decay, eps, check_values)
    K, D = embed_avg.shape
    stats = _reference_stats(z.detach(), idx, K, deterministic)      # (K, D+1)
    if reduce_hook is not None:
        reduce_hook(stats)
    cluster_size.mul_(decay).add_(stats[:, D], alpha=1.0 - decay)
    embed_avg.mul_(decay).add_(stats[:, :D], alpha=1.0 - decay)
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + K * eps) * n               # (K,)
    weight.copy_(embed_avg / smoothed[:, None])


@torch.no_grad()
def ema_update_(cluster_size: torch.Tensor, embed_avg: torch.Tensor, weight: torch.Tensor,
                z: torch.Tensor, idx: torch.Tensor, *, decay: float, eps: float, backend: str = "auto",
                deterministic: bool = False, reduce_hook: ReduceHook = None, check_values: bool = True) -> None:
    """In-place EMA update of (cluster_size[K], embed_avg[K,D], weight[K,D]) from rows z[N,D] assigned to idx[N].

    deterministic: fixed summation order (sorted segments, no float atomics) for bitwise-reproducible runs.
    reduce_hook: called with the fp32 (K, D+1) batch statistics before the EMA (DDP all-reduce).
    check_values: reject non-finite z and out-of-range idx (one host sync; the quantizers turn it off).
    """
    _validate(cluster_size, embed_avg, weight, z, idx, decay, eps, check_values)
    be = resolve_backend(backend, z, embed_avg, op="ema_update_")
    if be == "torch":
        ema_update_reference_(cluster_size, embed_avg, weight, z, idx, decay=decay, eps=eps,
                              deterministic=deterministic, reduce_hook=reduce_hook, check_values=False)
        return
    from vqfast.kernels.ema_update import ema_apply, ema_stats

    z = z.detach()
    if z.stride(1) != 1:
        z = z.contiguous()
    idx = idx.contiguous().long()
    stats = ema_stats(z, idx, embed_avg.shape[0], deterministic)    # (K, D+1)
    if reduce_hook is not None:
        reduce_hook(stats)
    ema_apply(cluster_size, embed_avg, weight, stats, float(decay), float(eps))
