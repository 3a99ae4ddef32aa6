"""The loader exceptions (defined in ``vqfast.errors``, under the one root ``VQFastError``; re-exported here
because the Rust extension raises them by name from this module).

    LoaderError(VQFastError)
    ├── ShardError(LoaderError, ValueError)       a file is corrupt, unsupported or mismatched
    │   ├── CorruptShardError                     truncated / inconsistent zip, pickle or data
    │   ├── UnsupportedFormatError                deflated entry, big-endian, disallowed global, legacy .pt
    │   └── SchemaError                           missing key, dtype/shape differs across shards
    ├── FrameDecodeError(LoaderError, ValueError) a JPEG/PNG frame cannot be decoded
    ├── ShardIOError(LoaderError, OSError)        the OS refused (read error)
    │   └── ShardNotFoundError(ShardError, FileNotFoundError)  the file does not exist
    ├── LoaderClosedError(LoaderError)            the loader was closed while iterating
    ├── ForkError(LoaderError, RuntimeError)      a loader was used in a child process after fork()
    └── InternalLoaderError(LoaderError, RuntimeError)  a panic in Rust (a bug; please report)
"""
from __future__ import annotations

from vqfast.errors import (
    CorruptShardError,
    ForkError,
    FrameDecodeError,
    InternalLoaderError,
    LoaderClosedError,
    LoaderError,
    SchemaError,
    ShardError,
    ShardIOError,
    ShardNotFoundError,
    UnsupportedFormatError,
)

__all__ = [
    "LoaderError",
    "ShardError",
    "CorruptShardError",
    "UnsupportedFormatError",
    "SchemaError",
    "FrameDecodeError",
    "ShardIOError",
    "ShardNotFoundError",
    "LoaderClosedError",
    "ForkError",
    "InternalLoaderError",
]
