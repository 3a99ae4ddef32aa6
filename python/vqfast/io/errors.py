"""Exceptions raised by the vqfast loaders.

Every error about a file carries ``path``, ``location`` (``"offset N"``, ``"entry 'x' offset N"``
or ``"key 'k'"``, or ``None``), ``reason`` and ``kind``, and its message starts with the path.

    LoaderError(Exception)
    ├── ShardError(LoaderError, ValueError)       a file is corrupt, unsupported or mismatched
    │   ├── CorruptShardError                     truncated / inconsistent zip, pickle or data
    │   ├── UnsupportedFormatError                deflated entry, big-endian, disallowed global, legacy .pt
    │   └── SchemaError                           missing key, dtype/shape differs across shards
    ├── FrameDecodeError(LoaderError, ValueError) a JPEG/PNG frame cannot be decoded
    ├── ShardIOError(LoaderError, OSError)        the OS refused (missing file, read error)
    ├── LoaderClosedError(LoaderError)            the loader was closed while iterating
    ├── ForkError(LoaderError, RuntimeError)      a loader was used in a child process after fork()
    └── InternalLoaderError(LoaderError, RuntimeError)  a panic in Rust (a bug; please report)
"""
from __future__ import annotations

from typing import Optional

__all__ = [
    "LoaderError",
    "ShardError",
    "CorruptShardError",
    "UnsupportedFormatError",
    "SchemaError",
    "FrameDecodeError",
    "ShardIOError",
    "LoaderClosedError",
    "ForkError",
    "InternalLoaderError",
]


class LoaderError(Exception):
    """Base class of every vqfast loader error."""

    path: Optional[str] = None
    location: Optional[str] = None
    reason: Optional[str] = None
    kind: Optional[str] = None


class ShardError(LoaderError, ValueError):
    """A shard or ``.pt`` file is corrupt, truncated, unsupported or does not match the schema."""


class CorruptShardError(ShardError):
    """Truncated or internally inconsistent file."""


class UnsupportedFormatError(ShardError):
    """Well-formed, but outside what vqfast reads (never executed: nothing is imported or called)."""


class SchemaError(ShardError):
    """Missing key, or dtype/shape that differs from the other shards."""


class FrameDecodeError(LoaderError, ValueError):
    """A video frame file could not be decoded."""


class ShardIOError(LoaderError, OSError):
    """The operating system refused to open or read a file."""


class LoaderClosedError(LoaderError):
    """The loader was closed while a batch was awaited."""


class ForkError(LoaderError, RuntimeError):
    """Loaders run Rust threads, which do not survive ``fork()``."""


class InternalLoaderError(LoaderError, RuntimeError):
    """A panic inside the Rust extension, turned into an exception (a bug)."""
