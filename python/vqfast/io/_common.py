"""Shared helpers of the loaders: rank/world defaults, thread budget (from ``vqfast.loaders.plan``, shared with the
pure-Python reference loaders), fork guard, stream lifecycle."""
from __future__ import annotations

import logging
import os
from typing import Any

from vqfast.loaders.plan import check_on_error, check_positive, check_seed, resolve_rank, resolve_threads

from .errors import ForkError

logger = logging.getLogger("vqfast")

__all__ = ["logger", "resolve_rank", "resolve_threads", "check_positive", "check_on_error", "check_seed", "ForkGuard",
           "StreamOwner"]


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
