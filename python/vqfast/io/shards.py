"""``LatentShardLoader``: shuffled, DDP-aware batches of latent rows from ``.pt``/``.npy``/``.npz`` shards.

The Rust core parses each shard's header once (zip directory + restricted pickle, or the npy
header), then worker threads ``pread`` the rows of each batch into one owned buffer per key,
which Python wraps zero-copy (``torch.from_numpy``). The epoch order is a pure function of
(seed, epoch, shard sizes, rank, world_size): a seeded shard permutation, then a shuffle of all
rows inside blocks of ``block_shards`` shards (locality: a block's files are read together).
``vqfast.data.latents.TorchLatentShardLoader`` is its pure-Python reference (same plan, batches and state).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from vqfast import _io
from vqfast.loaders.latents import expand_paths

from ._common import (
    ForkGuard,
    StreamOwner,
    check_on_error,
    check_positive,
    check_seed,
    logger,
    resolve_rank,
    resolve_threads,
)
from .errors import SchemaError

__all__ = ["LatentShardLoader", "expand_paths", "verify"]

class LatentShardLoader(StreamOwner):
    """Iterate dicts of batched tensors: ``{key: (B, ...), label_key: (B, ...), "index": int64 (B,)}``.

    Args:
        paths: shard files (``.pt`` written by ``torch.save``, ``.npy``, uncompressed ``.npz``), a
            directory, or a glob. Every shard holds ``key`` (and ``label_key``) with the samples
            along dim 0; dtypes and per-sample shapes must agree across shards. In a ``.pt`` the
            key is a top-level dict key or a dotted path; the tensor must be C-contiguous.
        batch_size: samples per batch (the last batch is smaller only with ``drop_last=False``).
        shuffle: seeded shuffle per (seed, epoch); ``False`` keeps file order.
        rank, world_size: default to ``torch.distributed`` when initialised, else 0 and 1.
            Every rank gets exactly ``len(loader)`` batches; over all ranks an epoch covers each
            sample once (``drop_last=False`` repeats a few, only to even out the ranks).
        num_threads: Rust worker threads (default: usable CPUs, at most 8).
        prefetch: batches built ahead of the consumer (bounded memory).
        block_shards: shards whose rows are shuffled together (0 = one global shuffle).
        on_error: ``"raise"`` (default) or ``"skip"``: unreadable shards are left out, recorded
            in ``loader.errors`` and logged; batch counts stay equal across ranks as long as all
            ranks see the same files.

    ``"index"`` holds global sample ids: position in the concatenation of the (readable) shards.
    """

    def __init__(
        self,
        paths: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
        *,
        key: str = "latents",
        label_key: Optional[str] = None,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        drop_last: bool = True,
        num_threads: Optional[int] = None,
        prefetch: int = 4,
        block_shards: int = 4,
        on_error: str = "raise",
    ) -> None:
        self.paths = expand_paths(paths)
        self.key = key
        self.label_key = label_key
        self.batch_size = check_positive("batch_size", batch_size)
        self.prefetch = check_positive("prefetch", prefetch)
        self.num_threads = resolve_threads(num_threads)
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.on_error = check_on_error(on_error)
        check_seed(seed)
        if not isinstance(block_shards, int) or isinstance(block_shards, bool) or block_shards < 0:
            raise ValueError(f"block_shards must be an int >= 0, got {block_shards!r}")
        if label_key is not None and label_key == key:
            raise ValueError(f"label_key must differ from key, both are {key!r}")
        self.seed, self.shuffle, self.drop_last, self.block_shards = seed, bool(shuffle), bool(drop_last), block_shards
        keys = [key] if label_key is None else [key, label_key]
        self._core = _io.ShardSetCore(
            self.paths, keys, batch_size=batch_size, shuffle=self.shuffle, seed=seed, rank=self.rank,
            world_size=self.world_size, drop_last=self.drop_last, block_shards=block_shards,
            skip_errors=self.on_error == "skip",
        )
        self._fields: List[Tuple[str, torch.dtype, Tuple[int, ...]]] = [
            (k, getattr(torch, dt), tuple(shape)) for k, dt, shape in self._core.fields()
        ]
        #: ``[(path, message)]`` of shards left out (``on_error="skip"``).
        self.errors: List[Tuple[str, str]] = list(self._core.skipped())
        for _path, message in self.errors:
            logger.warning("LatentShardLoader: skipping unreadable shard %s", message)
        self._epoch = 0
        self._resume_batch = 0
        self._next_batch = 0
        self._stream: Optional[Any] = None
        self._guard = ForkGuard()

    # -- schema / sizes -------------------------------------------------------------------
    @property
    def fields(self) -> List[Tuple[str, torch.dtype, Tuple[int, ...]]]:
        """``[(key, dtype, per-sample shape)]``."""
        return list(self._fields)

    @property
    def shard_sizes(self) -> List[int]:
        return list(self._core.sizes())

    @property
    def num_samples(self) -> int:
        return sum(self._core.sizes())

    @property
    def epoch(self) -> int:
        return self._epoch

    def __len__(self) -> int:
        """Batches per rank per epoch (identical on every rank)."""
        return self._core.num_batches()

    def fingerprint(self) -> int:
        return self._core.fingerprint()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration uses (like ``DistributedSampler``)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self._epoch = epoch
        self._resume_batch = 0

    def epoch_plan(self, epoch: Optional[int] = None) -> torch.Tensor:
        """This rank's global sample ids for ``epoch``, in delivery order (int64)."""
        return torch.from_numpy(self._core.plan(self._epoch if epoch is None else epoch))

    # -- resume -----------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, int]:
        """Position for exact mid-epoch resume: epoch and batches already delivered."""
        return {
            "epoch": self._epoch,
            "batch": self._next_batch,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "fingerprint": self._core.fingerprint(),
        }

    def load_state_dict(self, state: Dict[str, int]) -> None:
        """Continue from ``state``: the next iteration starts at its epoch and batch."""
        for name in ("epoch", "batch", "fingerprint"):
            if name not in state:
                raise ValueError(f"state_dict is missing {name!r}; got keys {sorted(state)}")
        if state["fingerprint"] != self._core.fingerprint():
            raise SchemaError(
                "loader state does not match this loader: shard sizes, seed, batch_size, world_size, shuffle, "
                "drop_last or block_shards differ from when the state was saved"
            )
        self._epoch = int(state["epoch"])
        self._resume_batch = int(state["batch"])
        self._next_batch = self._resume_batch

    # -- iteration --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        self._guard.check("LatentShardLoader")
        self.close()
        start, self._resume_batch = self._resume_batch, 0
        self._next_batch = start
        stream = self._core.iterate(self._epoch, start, self.num_threads, self.prefetch)
        self._stream = stream
        return self._batches(stream)

    def _batches(self, stream: Any) -> Iterator[Dict[str, torch.Tensor]]:
        try:
            for ids, buffers, _errors in stream:
                n = ids.shape[0]
                batch: Dict[str, torch.Tensor] = {}
                for (name, dtype, shape), buf in zip(self._fields, buffers, strict=True):
                    batch[name] = torch.from_numpy(buf).view(dtype).view(n, *shape)  # (B, *shape)
                batch["index"] = torch.from_numpy(ids)  # (B,)
                self._next_batch += 1
                yield batch
        finally:
            self._close_stream(stream)


def verify(paths: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]], *, key: str = "latents",
           label_key: Optional[str] = None) -> List[Tuple[str, str]]:
    """Check shards before a run: parse every header and pickle, check the keys, dtypes and
    per-sample shapes agree and that the data lies inside each file. Returns ``[(path, message)]``
    for the bad ones (empty when all are fine); reads no sample data."""
    keys = [key] if label_key is None else [key, label_key]
    try:
        core = _io.ShardSetCore(expand_paths(paths), keys, batch_size=1, shuffle=False, seed=0, rank=0, world_size=1,
                                drop_last=False, block_shards=0, skip_errors=True)
    except ValueError as e:  # not one readable shard
        if "no readable shard" not in str(e):
            raise
        return [(p, "unreadable") for p in expand_paths(paths)]
    return list(core.skipped())
