"""Every error vqfast raises on purpose, under one root: ``VQFastError``.

Each class keeps the built-in it behaves like as a second base (``ValueError``, ``FileNotFoundError``, ...),
so ``except ValueError`` keeps working, and ``except VQFastError`` catches everything vqfast raised on
purpose. The training CLI turns any ``VQFastError`` into one line on stderr and exit code 2 (``NonFiniteError``:
exit 3). Messages name the bad value, key, file or path and what is allowed. This module imports nothing,
so every layer (kernels to train, and the loaders without their Rust extension) can use it.

    VQFastError(Exception)
    ├── InputError(ValueError)            a tensor argument has the wrong rank, shape, dtype, device or values
    ├── BackendError(ValueError)          unknown backend, or the backend cannot run these inputs
    ├── ConfigError(ValueError)           a config file / --set value is invalid (unknown key, type, range)
    ├── CheckpointError(ValueError)       a checkpoint cannot be read or does not fit the model
    │   └── CheckpointNotFoundError(FileNotFoundError)
    ├── DataError(ValueError)             training data is missing, empty or unreadable
    │   └── DataNotFoundError(FileNotFoundError)
    ├── WeightsNotFoundError(FileNotFoundError)  pretrained weights (VGG, DINO, VAE, Inception) are not on disk
    ├── RunDirError(ValueError)           the run directory is held by another process or would be overwritten
    ├── NonFiniteError(RuntimeError)      too many consecutive non-finite training steps
    └── LoaderError                       the Rust loaders and their Python references (``vqfast.io``)
        ├── ShardError(ValueError)        a file is corrupt, unsupported or mismatched
        │   ├── CorruptShardError         truncated / inconsistent zip, pickle or data
        │   ├── UnsupportedFormatError    deflated entry, big-endian, disallowed global, legacy .pt
        │   └── SchemaError               missing key, dtype/shape differs across shards
        ├── FrameDecodeError(ValueError)  a JPEG/PNG frame or video cannot be decoded
        ├── ShardIOError(OSError)         the OS refused (read error, permission)
        │   └── ShardNotFoundError(ShardError, FileNotFoundError)  the file does not exist
        ├── LoaderClosedError             the loader was closed while iterating
        ├── ForkError(RuntimeError)       a loader was used in a child process after fork()
        └── InternalLoaderError(RuntimeError)  a panic in Rust (a bug; please report)
"""
from __future__ import annotations

from typing import Optional


class VQFastError(Exception):
    """Base class of every error vqfast raises on purpose."""


class InputError(VQFastError, ValueError):
    """A tensor argument has the wrong rank, shape, dtype or device, or holds non-finite values."""


class BackendError(VQFastError, ValueError):
    """An unknown backend was requested, or the requested backend cannot run these inputs."""


class ConfigError(VQFastError, ValueError):
    """A config file or ``--set`` override is invalid (unknown key, wrong type, bad value)."""


class CheckpointError(VQFastError, ValueError):
    """A checkpoint cannot be read, or does not fit the model/optimizers built from the config."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file named by the user does not exist."""


class DataError(VQFastError, ValueError):
    """Training or evaluation data is missing, empty, too small for a batch, or unreadable."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data folder or file named by the user does not exist."""


class WeightsNotFoundError(VQFastError, FileNotFoundError):
    """Pretrained weights (VGG for LPIPS, a DINO teacher, an SD-VAE, Inception) are not on disk; the message
    names the file and where to put it (nothing is downloaded)."""


class RunDirError(VQFastError, ValueError):
    """The run directory is locked by another process, or a fresh run would overwrite its checkpoints."""


class NonFiniteError(VQFastError, RuntimeError):
    """Too many consecutive training steps with non-finite losses or gradients (``train.max_bad_steps``)."""


# ---- loaders -----------------------------------------------------------------------------------------------
class LoaderError(VQFastError):
    """Base class of every vqfast loader error. Errors about a file carry ``path``, ``location``
    (``"offset N"``, ``"entry 'x' offset N"``, ``"key 'k'"`` or ``None``), ``reason`` and ``kind``,
    and the message starts with the path."""

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
    """A video frame (or image) file could not be decoded."""


class ShardIOError(LoaderError, OSError):
    """The operating system refused to open or read a file."""


class ShardNotFoundError(ShardIOError, ShardError, FileNotFoundError):
    """The file does not exist: a ``ShardError`` and a ``FileNotFoundError`` at once."""


class LoaderClosedError(LoaderError):
    """The loader was closed while a batch was awaited."""


class ForkError(LoaderError, RuntimeError):
    """Loaders run Rust threads, which do not survive ``fork()``."""


class InternalLoaderError(LoaderError, RuntimeError):
    """A panic inside the Rust extension, turned into an exception (a bug)."""
