"""k-means and k-means++ codebook initialisation on nearest_code + segment sums, exact across DDP ranks.

Under DDP every rank passes its own rows; the result is the k-means of the concatenation of all ranks' rows
(rank order), identical on every rank, the same as one process running on the concatenated data with the
same seed (up to the summation order of the all-reduced statistics):
- init "random": K global row numbers drawn from a generator seeded with `seed` (the same on every rank);
  each rank contributes the rows it owns, one all-reduce assembles them.
- init "kmeans++" (Arthur & Vassilvitskii 2007): each new centre is a global row drawn with probability
  D(x)^2 / sum D^2; the per-rank sums are all-gathered, the shared generator picks the rank and the offset,
  the owning rank contributes the row (one all-reduce). D^2 is updated incrementally (one O(N D) pass per
  centre): O(K N D) total, so it is meant for K up to a few thousand codes; larger codebooks use "random".
- Lloyd iterations: nearest_code (fused argmin, never N x K) and segment_stats ((K, D+1) sums and counts,
  the EMA kernel), all-reduced in one buffer; empty clusters keep their centre.
Returns (centroids fp32 (K, D), counts fp32 (K,) of the last assignment, global).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist

from vqfast.errors import InputError
from vqfast.ops import nearest_code
from vqfast.ops.ema_update import segment_stats
from vqfast.quantize._dist import ddp_active

Init = Literal["random", "kmeans++"]


def _world(sync: bool) -> tuple[int, int]:
    if sync and ddp_active():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _global_sizes(n: int, device, world: int) -> list[int]:
    if world == 1:
        return [n]
    t = torch.tensor([n], dtype=torch.int64, device=device)
    out = [torch.zeros_like(t) for _ in range(world)]
    dist.all_gather(out, t)
    return [int(v) for v in out]


def _rows_from_global(x: torch.Tensor, rows: torch.Tensor, offset: int, world: int) -> torch.Tensor:
    """(len(rows), D) fp32: the global rows `rows`, each rank filling the ones it owns, then summed."""
    local = rows - offset
    mine = (local >= 0) & (local < x.shape[0])
    out = torch.zeros(rows.shape[0], x.shape[1], dtype=torch.float32, device=x.device)
    out[mine] = x.index_select(0, local[mine]).float()
    if world > 1:
        dist.all_reduce(out)
    return out


def _kmeanspp(x, K, sizes, offset, rank, world, gen):
    total_n = sum(sizes)
    first = torch.randint(0, total_n, (1,), generator=gen).to(x.device)
    centroids = torch.empty(K, x.shape[1], dtype=torch.float32, device=x.device)
    centroids[0:1] = _rows_from_global(x, first, offset, world)
    d2 = ((x.float() - centroids[0]) ** 2).sum(1).double()          # (N,) fp64 for stable cumulative sums
    for k in range(1, K):
        sums = d2.sum().reshape(1)
        if world > 1:
            parts = [torch.zeros_like(sums) for _ in range(world)]
            dist.all_gather(parts, sums)
            sums = torch.cat(parts)
        cum = torch.cumsum(sums.cpu(), 0)                             # (world,) host: one sync per centre
        u = float(torch.rand((), generator=gen, dtype=torch.float64)) * float(cum[-1])
        if float(cum[-1]) <= 0.0:                                     # every row already a centre
            row = torch.randint(0, total_n, (1,), generator=gen)
        else:
            r = min(int(torch.searchsorted(cum, torch.tensor([u], dtype=torch.float64), right=True)), world - 1)
            base = float(cum[r - 1]) if r else 0.0
            row = torch.tensor([-1], dtype=torch.int64)
            if r == rank:
                local_cum = torch.cumsum(d2, 0)
                j = int(torch.searchsorted(local_cum, torch.tensor([u - base], dtype=torch.float64,
                                                                   device=x.device), right=True))
                row = torch.tensor([offset + min(j, x.shape[0] - 1)], dtype=torch.int64)
            if world > 1:
                t = row.to(x.device)
                dist.broadcast(t, r)
                row = t.cpu()
        centroids[k:k + 1] = _rows_from_global(x, row.to(x.device), offset, world)
        d2 = torch.minimum(d2, ((x.float() - centroids[k]) ** 2).sum(1).double())
    return centroids


@torch.no_grad()
def kmeans(x: torch.Tensor, K: int, *, iters: int = 10, init: Init = "random", seed: int | None = None,
           backend: str = "auto", sync_ddp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of x (N, D) (all ranks' rows under DDP with sync_ddp) into K centres; see the module docstring.

    seed None: one process with init "random" draws its rows from torch's global RNG (randperm, as the
    quantizers always did); otherwise a seed drawn from the global RNG on rank 0 is broadcast."""
    if init not in ("random", "kmeans++"):
        raise InputError(f"kmeans: init={init!r} is not one of ('random', 'kmeans++')")
    if int(K) < 1 or int(iters) < 0:
        raise InputError(f"kmeans: K={K} must be >= 1 and iters={iters} >= 0")
    rank, world = _world(sync_ddp)
    sizes = _global_sizes(x.shape[0], x.device, world)
    if sum(sizes) == 0:
        raise InputError("kmeans: no rows on any rank")
    offset = sum(sizes[:rank])
    n = sum(sizes)
    if seed is None and world == 1 and init == "random":
        rows = torch.randperm(n, device=x.device)[:K] if n >= K else torch.randint(0, n, (K,), device=x.device)
        return _lloyd(x, x.float().index_select(0, rows), int(K), int(iters), world, backend)
    if seed is None:
        t = torch.randint(0, 2**62, (1,), device=x.device)
        if world > 1:
            dist.broadcast(t, 0)
        seed = int(t)
    gen = torch.Generator().manual_seed(int(seed))                   # identical draws on every rank
    if init == "random":
        rows = torch.randperm(n, generator=gen)[:K] if n >= K else torch.randint(0, n, (K,), generator=gen)
        centroids = _rows_from_global(x, rows.to(x.device), offset, world)
    else:
        centroids = _kmeanspp(x, int(K), sizes, offset, rank, world, gen)
    return _lloyd(x, centroids, int(K), int(iters), world, backend)


def _lloyd(x, centroids, K, iters, world, backend):
    counts = torch.zeros(K, dtype=torch.float32, device=x.device)
    D = x.shape[1]
    for _ in range(iters):
        if x.shape[0]:
            idx, _ = nearest_code(x, centroids.to(x.dtype), backend=backend, check_values=False)
            stats = segment_stats(x, idx, K, backend=backend)         # (K, D+1)
        else:
            stats = torch.zeros(K, D + 1, dtype=torch.float32, device=x.device)
        if world > 1:
            dist.all_reduce(stats)                                    # one buffer: sums and counts
        counts = stats[:, D]
        centroids = torch.where(counts[:, None] > 0, stats[:, :D] / counts.clamp_min(1.0)[:, None], centroids)
    return centroids, counts
