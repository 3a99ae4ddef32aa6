"""taming's index remapping (``VectorQuantizer2.remap_to_used`` / ``unmap_to_all``,
taming/modules/vqvae/quantize.py): the codes a model returns are positions in a reduced vocabulary ``used``
(a 1-D array of codebook rows, taming's ``remap`` .npy file). A code outside ``used`` becomes
``unknown_index``: ``"random"`` (uniform in the reduced vocabulary, taming's default), ``"extra"`` (one extra
token, ``len(used)``) or a fixed integer. The nearest code itself (z_q, the loss) is unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch

from vqfast.errors import CheckpointNotFoundError, InputError

UnknownIndex = Union[str, int]


def load_used(path: str | Path) -> torch.Tensor:
    """taming ``np.load(remap)``: the used codebook rows as int64 (N,)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointNotFoundError(f"remap file {str(path)!r} does not exist (a .npy array of used code indices)")
    try:
        used = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"remap file {str(path)!r} is not a .npy array: {exc}") from exc
    if used.ndim != 1 or used.size == 0 or not np.issubdtype(used.dtype, np.integer):
        raise InputError(f"remap file {str(path)!r}: expected a non-empty 1-D integer array, got shape "
                         f"{used.shape} dtype {used.dtype}")
    return torch.from_numpy(used.astype(np.int64))


def reduced_vocab(used: torch.Tensor, unknown_index: UnknownIndex) -> tuple[int, UnknownIndex]:
    """(``re_embed``, resolved ``unknown_index``): taming adds one token for ``"extra"``."""
    n = int(used.shape[0])
    if unknown_index == "extra":
        return n + 1, n
    if unknown_index == "random":
        return n, "random"
    if isinstance(unknown_index, bool) or not isinstance(unknown_index, int) or not 0 <= unknown_index < n:
        raise InputError(f"unknown_index={unknown_index!r}: 'random', 'extra' or an integer in [0, {n})")
    return n, int(unknown_index)


def remap_to_used(inds: torch.Tensor, used: torch.Tensor, unknown_index: UnknownIndex, re_embed: int) -> torch.Tensor:
    """Codebook rows (B, ...) → positions in ``used``; rows not in ``used`` → ``unknown_index``."""
    shape = inds.shape
    flat = inds.reshape(shape[0], -1)                                # (B, N)
    match = flat[:, :, None] == used.to(flat)[None, None, :]         # (B, N, U)
    new = match.long().argmax(-1)
    unknown = ~match.any(-1)
    if unknown_index == "random":
        new = torch.where(unknown, torch.randint(0, re_embed, new.shape, device=new.device), new)
    else:
        new = torch.where(unknown, torch.full_like(new, int(unknown_index)), new)
    return new.reshape(shape)


def unmap_to_all(inds: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    """Positions in ``used`` (B, ...) → codebook rows; the extra token maps to position 0 (as taming)."""
    shape = inds.shape
    flat = inds.reshape(shape[0], -1).clone()
    flat[flat >= used.shape[0]] = 0
    return used.to(flat)[flat].reshape(shape)
