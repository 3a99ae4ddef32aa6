"""Pure-Python reference of ``vqfast.io.LatentShardLoader``: the same plan (block shuffle over shards, ranks,
batches), the same batches and state, and the same skip-at-open rule, reading shards with ``torch.load``
(``weights_only=True``), ``numpy.load`` for ``.npy``/``.npz``. Works without the Rust extension.
"""
from __future__ import annotations

import glob
import logging
import os
import zipfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from vqfast.errors import CorruptShardError, DataError, SchemaError, ShardNotFoundError, UnsupportedFormatError
from vqfast.loaders.plan import (
    PlanConfig,
    check_on_error,
    check_positive,
    check_seed,
    epoch_order,
    fingerprint,
    num_batches,
    rank_plan,
    resolve_rank,
    resolve_threads,
)

log = logging.getLogger("vqfast")


class LatentDataError(DataError):
    """Latent shards are missing, unreadable or inconsistent (names the path / key and what was expected)."""


class LatentShardNotFoundError(LatentDataError, ShardNotFoundError):
    """A latent shard does not exist (``TorchLatentShardLoader``; the Rust loader raises ``ShardNotFoundError``)."""


class LatentSchemaError(LatentDataError, SchemaError):
    """A latent shard lacks a key, or its dtype / per-sample shape / row count disagrees (``SchemaError`` in Rust)."""


class LatentShardReadError(LatentDataError, CorruptShardError):
    """A latent shard cannot be read (torch.load / numpy failed on it)."""


class LatentUnsupportedError(LatentDataError, UnsupportedFormatError):
    """A latent shard is readable but outside what the Rust loader reads (compressed .npz, Fortran order)."""


_SHARD_EXTS = (".pt", ".pth", ".npy", ".npz")


def expand_paths(paths: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]) -> List[str]:
    """A directory (its ``*.pt|*.pth|*.npy|*.npz`` files, sorted), a glob pattern, a file, or a list of those
    (the shard loaders' ``paths`` argument)."""
    if isinstance(paths, (str, os.PathLike)):
        items = [os.fspath(paths)]
    else:
        items = [os.fspath(p) for p in paths]
    out: List[str] = []
    for p in items:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(_SHARD_EXTS))
            if not found:
                raise ValueError(f"directory {p!r} holds no shard files ({', '.join(_SHARD_EXTS)})")
            out.extend(found)
        elif any(c in p for c in "*?["):
            found = sorted(glob.glob(p))
            if not found:
                raise ValueError(f"glob pattern {p!r} matches no file")
            out.extend(found)
        else:
            out.append(p)
    if not out:
        raise ValueError("paths is empty: give at least one shard file")
    return out


def _find_tensor(obj: Any, key: str) -> Optional[torch.Tensor]:
    """``ptfile::find_tensor``: ``key`` as a top-level key, else as a dotted path (list/tuple parts are indices)."""
    def lookup(o: Any, k: str) -> Any:
        if isinstance(o, dict):
            return o.get(k)
        if isinstance(o, (list, tuple)) and k.isdigit() and int(k) < len(o):
            return o[int(k)]
        return None

    direct = lookup(obj, key)
    if isinstance(direct, torch.Tensor):
        return direct
    cur = obj
    for part in key.split("."):
        cur = lookup(cur, part)
        if cur is None:
            return None
    return cur if isinstance(cur, torch.Tensor) else None


def _c_order(path: str, a: np.ndarray) -> torch.Tensor:
    """The Rust loader refuses Fortran-order arrays; so does the reference."""
    if a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous:
        raise LatentUnsupportedError(f"{path}: Fortran-order arrays are not supported; save with np.ascontiguousarray")
    return torch.from_numpy(np.array(a))


def _read_npy(path: str, keys: List[str]) -> List[torch.Tensor]:
    if len(keys) != 1:
        raise LatentSchemaError(f"{path}: key '{keys[1]}': an .npy file holds one array; use .npz or .pt "
                                "for several keys")
    return [_c_order(path, np.load(path, mmap_mode="r", allow_pickle=False))]


def _read_npz(path: str, keys: List[str]) -> List[torch.Tensor]:
    with zipfile.ZipFile(path) as zf:  # the Rust loader maps members: stored (uncompressed) only
        deflated = [i.filename for i in zf.infolist() if i.compress_type != zipfile.ZIP_STORED]
    with np.load(path, allow_pickle=False) as z:
        for k in keys:
            if k not in z.files:
                raise LatentSchemaError(f"{path}: shard has no key {k!r} (found {sorted(z.files)})")
            if k + ".npy" in deflated:
                raise LatentUnsupportedError(f"{path}: key '{k}': compressed .npz members are not supported; "
                                             "save with np.savez")
        return [_c_order(path, z[k]) for k in keys]


def _read_pt(path: str, keys: List[str]) -> List[torch.Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    arrays = []
    for k in keys:
        t = _find_tensor(obj, k)
        if t is None:
            found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise LatentSchemaError(f"{path}: shard has no key {k!r} (found {found})")
        if not t.is_contiguous():
            raise LatentSchemaError(f"{path}: key '{k}': tensor is not C-contiguous (size {list(t.shape)}, "
                                    f"stride {list(t.stride())}); save it with .contiguous()")
        arrays.append(t)
    return arrays


def _read_shard(path: str, keys: List[str]) -> List[torch.Tensor]:
    """The arrays ``keys`` of one shard (``.pt``/``.pth`` by torch.load(weights_only=True), ``.npy``, ``.npz``)."""
    read = {".npy": _read_npy, ".npz": _read_npz}.get(os.path.splitext(path)[1].lower(), _read_pt)
    try:
        arrays = read(path, keys)
    except LatentDataError:
        raise
    except FileNotFoundError as exc:
        raise LatentShardNotFoundError(f"{path}: {exc.strerror} (os error {exc.errno})") from exc
    except Exception as exc:
        raise LatentShardReadError(f"{path}: cannot read latent shard: {type(exc).__name__}: {exc}") from exc
    for k, t in zip(keys, arrays, strict=True):
        if t.dim() == 0:
            raise LatentSchemaError(f"{path}: key '{k}': tensor is 0-d; a shard tensor needs a leading sample "
                                    "dimension")
        if t.shape[0] != arrays[0].shape[0]:
            raise LatentSchemaError(f"{path}: key '{k}': has {t.shape[0]} rows but '{keys[0]}' has "
                                    f"{arrays[0].shape[0]}")
    return arrays


class TorchLatentShardLoader:
    """Iterate dicts of batched tensors ``{key: (B, ...), label_key: (B, ...), "index": int64 (B,)}``: the
    pure-Python, in-memory reference of :class:`vqfast.io.LatentShardLoader` (same arguments, plan, batches,
    ``len``, ``epoch_plan``, ``state_dict``; ``tests/io/test_latent_parity.py``).

    All shards are read at construction (``.pt``/``.pth`` through ``torch.load(weights_only=True)``, ``.npy``,
    ``.npz``). ``key`` is a top-level key or a dotted path. The plan is :mod:`vqfast.loaders.plan`'s: a seeded
    shard permutation per (seed, epoch), rows shuffled within blocks of ``block_shards`` shards (0: one global
    shuffle), dealt out batch by batch round-robin over ranks; every rank yields ``len(self)`` batches.
    ``on_error="skip"``: shards that cannot be read (missing, corrupt, missing key, dtype / per-sample shape
    unlike the first readable shard) are left out, recorded in ``errors`` as ``(path, message)`` and logged;
    ``"index"`` then counts rows of the readable shards only. ``num_threads``/``prefetch`` are checked and unused.
    """

    def __init__(self, paths: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]], *,
                 key: str = "latents", label_key: Optional[str] = None, batch_size: int, shuffle: bool = True,
                 seed: int = 0, rank: Optional[int] = None, world_size: Optional[int] = None, drop_last: bool = True,
                 num_threads: Optional[int] = None, prefetch: int = 4, block_shards: int = 4,
                 on_error: str = "raise"):
        self.paths = expand_paths(paths)
        self.key, self.label_key = key, label_key
        self.batch_size = check_positive("batch_size", batch_size)
        self.prefetch = check_positive("prefetch", prefetch)
        self.num_threads = resolve_threads(num_threads)
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.on_error = check_on_error(on_error)
        self.seed = check_seed(seed)
        if not isinstance(block_shards, int) or isinstance(block_shards, bool) or block_shards < 0:
            raise ValueError(f"block_shards must be an int >= 0, got {block_shards!r}")
        if label_key is not None and label_key == key:
            raise ValueError(f"label_key must differ from key, both are {key!r}")
        self.shuffle, self.drop_last, self.block_shards = bool(shuffle), bool(drop_last), block_shards
        keys = [key] if label_key is None else [key, label_key]
        parts: List[List[torch.Tensor]] = []
        schema: Optional[List[Tuple[torch.dtype, Tuple[int, ...]]]] = None
        #: ``[(path, message)]`` of shards left out (``on_error="skip"``).
        self.errors: List[Tuple[str, str]] = []
        self._sizes: List[int] = []
        for path in self.paths:
            try:
                arrays = _read_shard(path, keys)
                these = [(t.dtype, tuple(t.shape[1:])) for t in arrays]
                if schema is not None:
                    for k, (dt, shape), (dt0, shape0) in zip(keys, these, schema, strict=True):
                        if dt != dt0 or shape != shape0:
                            raise LatentSchemaError(
                                f"{path}: key '{k}': is {str(dt).replace('torch.', '')} {list(shape)} per sample but "
                                f"earlier shards have {str(dt0).replace('torch.', '')} {list(shape0)}")
            except LatentDataError as exc:
                if self.on_error == "raise":
                    raise
                self.errors.append((path, str(exc)))
                log.warning("TorchLatentShardLoader: skipping unreadable shard %s", exc)
                continue
            if schema is None:
                schema = these
            parts.append(arrays)
            self._sizes.append(int(arrays[0].shape[0]))
        if schema is None:
            raise LatentDataError(f"no readable shard among {len(self.paths)} paths")
        #: ``{key: all rows of the readable shards, concatenated}``.
        self.data: Dict[str, torch.Tensor] = {k: torch.cat([p[i] for p in parts]) for i, k in enumerate(keys)}
        self._fields = [(k, dt, shape) for k, (dt, shape) in zip(keys, schema, strict=True)]
        self._epoch = 0
        self._resume_batch = 0
        self._next_batch = 0

    # -- schema / sizes -----------------------------------------------------------------------------------------
    @property
    def fields(self) -> List[Tuple[str, torch.dtype, Tuple[int, ...]]]:
        """``[(key, dtype, per-sample shape)]``."""
        return list(self._fields)

    @property
    def shard_sizes(self) -> List[int]:
        return list(self._sizes)

    @property
    def num_samples(self) -> int:
        return sum(self._sizes)

    @property
    def epoch(self) -> int:
        return self._epoch

    def _cfg(self) -> PlanConfig:
        cfg = PlanConfig(self.batch_size, self.shuffle, self.seed, self.rank, self.world_size, self.drop_last,
                         self.block_shards)
        cfg.validate()
        return cfg

    def _rank_plan(self, epoch: int):
        cfg = self._cfg()
        return rank_plan(epoch_order(self._sizes, cfg, epoch), cfg)

    def __len__(self) -> int:
        """Batches per rank per epoch (identical on every rank)."""
        return num_batches(self.num_samples, self._cfg())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration uses (like ``DistributedSampler``)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self._epoch = epoch
        self._resume_batch = 0

    def epoch_plan(self, epoch: Optional[int] = None) -> torch.Tensor:
        """This rank's global sample ids for ``epoch``, in delivery order (int64)."""
        return torch.tensor(self._rank_plan(self._epoch if epoch is None else epoch).samples, dtype=torch.int64)

    def fingerprint(self) -> int:
        return fingerprint(self._sizes, self._cfg())

    # -- resume ---------------------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, int]:
        """Position for exact mid-epoch resume (the same dict as ``vqfast.io.LatentShardLoader``'s)."""
        return {"epoch": self._epoch, "batch": self._next_batch, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size, "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        """Continue from ``state``: the next iteration starts at its epoch and batch."""
        for name in ("epoch", "batch", "fingerprint"):
            if name not in state:
                raise ValueError(f"state_dict is missing {name!r}; got keys {sorted(state)}")
        if state["fingerprint"] != self.fingerprint():
            raise SchemaError(
                "loader state does not match this loader: shard sizes, seed, batch_size, world_size, shuffle, "
                "drop_last or block_shards differ from when the state was saved"
            )
        self._epoch = int(state["epoch"])
        self._resume_batch = int(state["batch"])
        self._next_batch = self._resume_batch

    # -- iteration ------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        start, self._resume_batch = self._resume_batch, 0
        self._next_batch = start
        return self._batches(self._epoch, start)

    def _batches(self, epoch: int, start: int) -> Iterator[Dict[str, torch.Tensor]]:
        plan = self._rank_plan(epoch)
        for k in range(start, plan.num_batches()):
            sel = torch.tensor(plan.batch(k), dtype=torch.int64)  # (B,)
            batch = {name: self.data[name][sel] for name, _, _ in self._fields}
            batch["index"] = sel
            self._next_batch += 1
            yield batch

    def close(self) -> None:
        """Nothing to stop (no worker threads); kept for interface parity."""

    def __enter__(self) -> "TorchLatentShardLoader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


