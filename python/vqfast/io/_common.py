"""Shared helpers of the loaders: rank/world defaults, thread budget, fork guard."""
from __future__ import annotations

import logging
import os
from typing import Any, Optional, Tuple

from .errors import ForkError

logger = logging.getLogger("vqfast")


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
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
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
    if not isinstance(num_threads, int) or num_threads < 1:
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


class ForkGuard:
    """Remembers the creating pid; Rust threads do not survive fork()."""

    def __init__(self) -> None:
        self._pid = os.getpid()

    def same_process(self) -> bool:
        return os.getpid() == self._pid

    def check(self, what: str) -> None:
        if os.getpid() != self._pid:
            raise ForkError(
                f"{what} was created in process {self._pid} and cannot be used after fork() (pid {os.getpid()}): "
                "its Rust threads do not cross fork(). Use DataLoader(num_workers=0) around it, or create "
                "the loader inside the worker process."
            )


class StreamOwner:
    """Lifecycle shared by the loaders, which own a Rust batch stream (``_stream``) and a ``ForkGuard``
    (``_guard``): close() stops the worker threads; context manager and ``__del__`` close too. After
    fork() the child must not touch the parent's workers (or their locks), so closing is skipped there."""

    _stream: Any = None
    _guard: "ForkGuard"

    def _close_stream(self, stream: Any) -> None:
        if stream is not None and self._guard.same_process():
            stream.close()

    def close(self) -> None:
        """Stop the worker threads of the current iteration (safe to call any time)."""
        stream, self._stream = self._stream, None
        self._close_stream(stream)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
