"""Epoch plans in pure Python: the exact reference of ``rust/src/plan.rs`` (and of the loaders' argument checks).

Which samples each rank reads, in which order, batch by batch, as a pure function of (seed, epoch, group sizes,
shuffle, block size, rank, world_size, batch_size, drop_last):

1. a seeded permutation of the groups (shards, or videos as groups of one);
2. consecutive groups are cut into blocks of ``block_groups``; within a block all samples are shuffled;
3. the global order is dealt out batch by batch, round-robin over ranks, so every rank gets the same number of
   batches. ``drop_last``: the tail that does not fill a batch on every rank is dropped. Otherwise the order is
   padded by wrap-around to ``ceil(N / W) * W`` samples and every rank's last batch has the same, possibly
   smaller, size.

Integers are unsigned 64-bit with wrap-around, as in Rust (``& MASK`` after every ``+``/``*``), so
``vqfast.loaders.clips.PyVideoClipLoader`` / ``vqfast.data.latents.TorchLatentShardLoader`` give exactly the
orders, clip starts and resume fingerprints of ``vqfast.io``. This module imports neither torch nor the Rust
extension.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

__all__ = ["MASK", "splitmix64", "mix", "Rng", "PlanConfig", "RankPlan", "epoch_order", "num_batches", "rank_plan",
           "fingerprint", "MAX_REPLACEMENTS", "replacement_budget", "read_ahead_distance", "read_ahead_batches",
           "resolve_rank", "resolve_threads", "check_positive", "check_on_error", "check_seed"]

MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(z: int) -> int:
    """SplitMix64 finaliser (``plan::splitmix64``)."""
    z = (z + _GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def mix(seed: int, epoch: int, stream: int) -> int:
    """Seed for a purpose (``stream``) from the user seed and the epoch (``plan::mix``)."""
    return splitmix64(splitmix64(splitmix64(seed & MASK) ^ ((epoch * 0xA24BAED4963EE407) & MASK)) ^ (stream & MASK))


class Rng:
    """The SplitMix64 stream of ``plan::Rng``: the same numbers on every platform."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK

    def next_u64(self) -> int:
        self.state = (self.state + _GOLDEN) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """Uniform in [0, n) (n > 0), unbiased (Lemire's method with rejection)."""
        if n <= 0:
            raise ValueError(f"Rng.below needs n > 0, got {n}")
        threshold = ((-n) & MASK) % n
        while True:
            m = self.next_u64() * n
            if (m & MASK) >= threshold:
                return m >> 64

    def shuffle(self, v: list, lo: int = 0, hi: Optional[int] = None) -> None:
        """Fisher-Yates over ``v[lo:hi]`` in place (``Rng::shuffle`` of that slice)."""
        hi = len(v) if hi is None else hi
        for i in range(hi - lo - 1, 0, -1):
            j = self.below(i + 1)
            v[lo + i], v[lo + j] = v[lo + j], v[lo + i]


@dataclass(frozen=True)
class PlanConfig:
    batch_size: int
    shuffle: bool
    seed: int
    rank: int
    world_size: int
    drop_last: bool
    #: Groups (shards) shuffled together; 0 = all groups in one block (a full shuffle).
    block_groups: int = 0

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.world_size < 1:
            raise ValueError("world_size must be >= 1")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} must be in [0, world_size={self.world_size})")


def epoch_order(sizes: Sequence[int], cfg: PlanConfig, epoch: int) -> List[int]:
    """The global sample order of one epoch (ids: offset of the group + index in the group)."""
    total = sum(sizes)
    if not cfg.shuffle:
        return list(range(total))
    offsets, acc = [], 0
    for s in sizes:
        offsets.append(acc)
        acc += s
    rng = Rng(mix(cfg.seed, epoch, 0x5EED0001))
    groups = list(range(len(sizes)))
    rng.shuffle(groups)
    block = max(len(groups), 1) if cfg.block_groups == 0 else cfg.block_groups
    order: List[int] = []
    for c in range(0, len(groups), block):
        start = len(order)
        for g in groups[c:c + block]:
            order.extend(range(offsets[g], offsets[g] + sizes[g]))
        rng.shuffle(order, start)
    return order


@dataclass
class RankPlan:
    """One rank's share of an epoch: ``samples`` batch after batch, ``batch_starts[k]:batch_starts[k+1]``."""

    samples: List[int] = field(default_factory=list)
    batch_starts: List[int] = field(default_factory=lambda: [0])

    def num_batches(self) -> int:
        return max(len(self.batch_starts) - 1, 0)

    def batch(self, k: int) -> List[int]:
        return self.samples[self.batch_starts[k]:self.batch_starts[k + 1]]


def num_batches(n: int, cfg: PlanConfig) -> int:
    """Batches per rank for ``n`` samples."""
    w, b = cfg.world_size, cfg.batch_size
    if n == 0:
        return 0
    if cfg.drop_last:
        return n // (w * b)
    per_rank = -(-n // w)
    return -(-per_rank // b)


def rank_plan(order: Sequence[int], cfg: PlanConfig) -> RankPlan:
    n = len(order)
    w, b, r = cfg.world_size, cfg.batch_size, cfg.rank
    nb = num_batches(n, cfg)
    plan = RankPlan()
    if nb == 0:
        return plan

    def take(s: int, count: int) -> None:
        plan.samples.extend(order[i % n] for i in range(s, s + count))
        plan.batch_starts.append(len(plan.samples))

    if cfg.drop_last:
        for k in range(nb):
            take((k * w + r) * b, b)
    else:
        per_rank = -(-n // w)
        last = per_rank - (nb - 1) * b
        for k in range(nb - 1):
            take((k * w + r) * b, b)
        take((nb - 1) * w * b + r * last, last)
    return plan


def fingerprint(sizes: Sequence[int], cfg: PlanConfig) -> int:
    """Everything the plan depends on except epoch and rank (``plan::fingerprint``, for resume checks)."""
    h = splitmix64((cfg.seed ^ 0xF1A6) & MASK)
    for s in sizes:
        h = splitmix64(h ^ (s & MASK))
    for v in (cfg.batch_size, cfg.world_size, int(cfg.shuffle), int(cfg.drop_last), cfg.block_groups):
        h = splitmix64(h ^ (v & MASK))
    return h


# ---- the clip skip rule and the shard read-ahead rule (``clips::ClipSet::load_batch``, ``shards``) ----------
#: At most this many replacement clips are tried per batch (and never more than the rank's plan holds).
MAX_REPLACEMENTS = 64


def replacement_budget(rank_samples: int) -> int:
    """Replacement attempts allowed per batch for a rank plan of ``rank_samples`` samples."""
    return min(rank_samples, MAX_REPLACEMENTS)


def read_ahead_distance(prefetch: int, num_threads: int) -> int:
    """How far ahead ``LatentShardLoader`` hints the shards of later batches (``shards::read_ahead_distance``)."""
    return prefetch + num_threads


def read_ahead_batches(k: int, n: int, ahead: int) -> List[int]:
    """Batches whose shards are hinted while batch ``k`` of ``n`` is read (``shards::read_ahead_batches``)."""
    out = [k] if k < n else []
    if ahead > 0 and k + ahead < n:
        out.append(k + ahead)
    return out


# ---- argument checks shared by vqfast.io and the pure-Python references -------------------------------------
def resolve_rank(rank: Optional[int], world_size: Optional[int]) -> Tuple[int, int]:
    """Explicit values win; else torch.distributed when initialised; else 0 / 1."""
    if rank is None or world_size is None:
        dist_rank, dist_world = 0, 1
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist_rank, dist_world = dist.get_rank(), dist.get_world_size()
        except Exception:  # pragma: no cover - torch without distributed support
            pass
        rank = dist_rank if rank is None else rank
        world_size = dist_world if world_size is None else world_size
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, world_size={world_size}), got {rank!r}")
    return rank, world_size


def resolve_threads(num_threads: Optional[int]) -> int:
    """Default: the CPUs this process may use, capped at 8."""
    if num_threads is None:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            n = os.cpu_count() or 1
        return max(1, min(8, n))
    if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1:
        raise ValueError(f"num_threads must be an int >= 1 or None, got {num_threads!r}")
    return num_threads


def check_positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def check_on_error(on_error: str) -> str:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error


def check_seed(seed: int) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MASK:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    return seed
