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

__all__ = ["load_pt", "inspect_pt", "TensorInfo"]

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
            self._storages[key] = base
        return base

    def tensor(self, key: str, dtype: str, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...],
               requires_grad: bool, parameter: bool) -> torch.Tensor:
        torch_dtype = getattr(torch, dtype)
        base = self._storage(key)
        itemsize = torch.empty((), dtype=torch_dtype).element_size()
        if base.data_ptr() % itemsize:
            # Not aligned for the dtype (an archive re-zipped without torch's padding): copy once.
            base = base.clone()
            self._storages[key] = base
        typed = base.view(torch_dtype)  # (numel,) in the storage's dtype
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
    archive = _io.PtArchive(os.fspath(path))
    return archive.build(_Factory(archive))


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
    out: Dict[str, TensorInfo] = {}
    for key, dtype, size, stride, offset, storage, requires_grad, parameter in archive.tensors():
        out[key] = TensorInfo(getattr(torch, dtype), tuple(size), tuple(stride), offset, storage, requires_grad, parameter)
    return out
