"""``load_pt`` / ``inspect_pt``: read ``torch.save`` files with the Rust reader, never unpickling.

Tensors are views of a private (copy-on-write) memory map of the file, like
``torch.load(path, mmap=True, weights_only=True)``: tensors that shared a storage when saved share
it again, and any layout (offsets, transposes, strides) is reproduced with ``as_strided``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

import torch

from vqfast import _io
from vqfast.errors import InputError

from .errors import CorruptShardError, ShardError

__all__ = ["load_pt", "inspect_pt", "TensorInfo", "set_limits", "get_limits"]

PathLike = Union[str, "os.PathLike[str]"]


class _Factory:
    """Called back by the Rust tree builder; turns descriptions into torch objects."""

    def __init__(self, archive: "_io.PtArchive") -> None:
        self._archive = archive
        self._storages: Dict[str, torch.Tensor] = {}

    def _storage(self, key: str) -> torch.Tensor:
        base = self._storages.get(key)
        if base is None:
            array = self._archive.storage(key)  # uint8 view of the mapping, zero-copy
            base = torch.from_numpy(array)  # (nbytes,) uint8
            if base.numel() <= 1:
                base = base.as_strided((base.numel(),), (1,))  # numpy may report stride 0 here
            if base.data_ptr() % 16:
                # Not aligned for every dtype (legacy files, archives re-zipped without torch's
                # padding): copy once, so every view of this storage still shares one buffer.
                base = base.clone()
            self._storages[key] = base
        return base

    def tensor(self, key: str, dtype: str, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...],
               requires_grad: bool, parameter: bool) -> torch.Tensor:
        torch_dtype = getattr(torch, dtype)
        base = self._storage(key)
        itemsize = torch.empty((), dtype=torch_dtype).element_size()
        # Rust checked that the entry is a whole number of elements and holds the view; view
        # only whole elements anyway (a storage shared by views of several dtypes).
        usable = base.numel() - base.numel() % itemsize
        typed = (base if usable == base.numel() else base[:usable]).view(torch_dtype)  # (numel,)
        t = typed.as_strided(size, stride, offset)
        if parameter:
            return torch.nn.Parameter(t, requires_grad=requires_grad)
        if requires_grad:
            t.requires_grad_(True)
        return t

    @staticmethod
    def size(dims: Tuple[int, ...]) -> torch.Size:
        return torch.Size(dims)

    @staticmethod
    def device(kind: str, index: Optional[int]) -> torch.device:
        return torch.device(kind) if index is None else torch.device(kind, index)

    @staticmethod
    def dtype(name: str) -> torch.dtype:
        return getattr(torch, name)


def load_pt(path: PathLike) -> Any:
    """Load a ``torch.save`` file like ``torch.load(path, weights_only=True)``, tensors memory-mapped.

    Reads the zip format ``torch.save`` writes by default (stored entries, memory-mapped) and the
    legacy format (``_use_new_zipfile_serialization=False``; unaligned storages are copied). Raises
    :class:`vqfast.io.ShardError` (naming the file, the offset or key, and the reason) for corrupt,
    truncated, deflated or big-endian files and for any pickle global or opcode outside the
    ``weights_only`` allow-list. Nothing in the file is ever executed.
    """
    fspath = os.fspath(path)
    archive = _io.PtArchive(fspath)
    try:
        return archive.build(_Factory(archive))
    except ShardError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure after validation names the file
        # Rust validated the structure; what torch still refuses while building the objects
        # (torch.device('bogus'), a negative device index, ...) is a property of the file.
        raise _corrupt(fspath, f"{type(exc).__name__} while building the loaded object: {exc}") from exc


def _corrupt(path: str, reason: str) -> CorruptShardError:
    err = CorruptShardError(f"{path}: {reason}")
    err.path, err.location, err.reason, err.kind = path, None, reason, "corrupt"
    return err


_LIMIT_NAMES = ("max_nodes", "max_bytes", "max_depth", "max_frame_pixels")


def get_limits() -> Dict[str, int]:
    """The reader limits now in force (process-wide), see :func:`set_limits`."""
    return dict(zip(_LIMIT_NAMES, _io.get_limits(), strict=True))


def set_limits(*, max_nodes: Optional[int] = None, max_bytes: Optional[int] = None,
               max_depth: Optional[int] = None, max_frame_pixels: Optional[int] = None) -> Dict[str, int]:
    """Change the limits that bound what one hostile file can make the readers do; returns the old ones.

    * ``max_nodes`` (default 2**24): values the pickle VM of a ``.pt`` may build (every pushed
      value and every element copied counts; a shared reference counts once as a value).
    * ``max_bytes`` (default 2**30): str/bytes/int payload bytes a pickle may materialise.
    * ``max_depth`` (default 200, at most 1000): container nesting of a loaded object.
    * ``max_frame_pixels`` (default 2**28): width x height of one JPEG/PNG frame, checked from
      its header before any buffer is allocated.

    A file that exceeds one raises ``ShardError`` (``FrameDecodeError`` for frames) naming it.
    Process-wide; loaders read them when they parse a file.
    """
    old = get_limits()
    new = dict(old)
    for name, value in (("max_nodes", max_nodes), ("max_bytes", max_bytes), ("max_depth", max_depth),
                        ("max_frame_pixels", max_frame_pixels)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"{name} must be a positive int, got {value!r}")
            new[name] = value
    _io.set_limits(new["max_nodes"], new["max_bytes"], new["max_depth"], new["max_frame_pixels"])
    return old


@dataclass(frozen=True)
class TensorInfo:
    """What ``inspect_pt`` reports for one tensor (no data is read)."""

    dtype: torch.dtype
    shape: Tuple[int, ...]
    stride: Tuple[int, ...]
    storage_offset: int
    storage_key: str
    requires_grad: bool
    is_parameter: bool

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()


def inspect_pt(path: PathLike) -> Dict[str, TensorInfo]:
    """Keys, dtypes and shapes of every tensor in a ``.pt`` file, without touching tensor data.

    Keys are dotted paths into nested containers (``"state_dict.encoder.weight"``, ``"layers.0"``).
    """
    archive = _io.PtArchive(os.fspath(path))
    paths, slots, specs = archive.tensors()
    infos = [TensorInfo(getattr(torch, dtype), tuple(size), tuple(stride), offset, storage, requires_grad, parameter)
             for dtype, size, stride, offset, storage, requires_grad, parameter in specs]
    # A tensor the file references from several places is one TensorInfo under each path.
    return dict(zip(paths, (infos[i] for i in slots), strict=True))
