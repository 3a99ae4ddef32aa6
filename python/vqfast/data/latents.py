"""Latent shards for the latent StarGAN v2: synthetic SD-VAE-like shards, the loader choice, reference pools.

A shard is a ``torch.save`` file holding ``{"latents": float32 (N, C, H, W) unscaled, "labels": int64 (N,)}``.
``vqfast.io.LatentShardLoader`` (Rust) reads them; ``TorchLatentShardLoader`` is its pure-Python, in-memory
reference (works without ``vqfast._io``): same arguments, same plan (block shuffle), same batches incl.
``"index"``, ``len``, ``set_epoch``, ``state_dict``/``load_state_dict`` and skip rule.
"""
from __future__ import annotations

import glob
import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from vqfast.data.plan import (PlanConfig, check_on_error, check_positive, check_seed, epoch_order, fingerprint,
                              num_batches, rank_plan, resolve_rank, resolve_threads)
from vqfast.errors import CorruptShardError, DataError, SchemaError, ShardNotFoundError, UnsupportedFormatError

log = logging.getLogger("vqfast")

__all__ = ["SD_LATENT_STD", "domain_statistics", "make_latent_shards", "list_shards", "expand_paths",
           "TorchLatentShardLoader", "build_latent_loader", "ReferencePool", "LatentDataError"]

SD_LATENT_STD = 1.0 / 0.18215
"""Unscaled SD-1.5 VAE latents have roughly this std (that is what latent_scale normalises)."""


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


def domain_statistics(num_domains: int, channels: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-domain, per-channel (mean, std) of generated unscaled latents, each (num_domains, channels).

    Domains are well separated: means differ by about one latent std, stds range over 0.6–1.4 × SD_LATENT_STD.
    """
    if num_domains < 2:
        raise LatentDataError(f"num_domains={num_domains}: need at least 2 domains")
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (1, channels), generator=g).float() * 2 - 1              # (1, C)
    steps = torch.linspace(-1.0, 1.0, num_domains)[:, None]                              # (D, 1)
    means = SD_LATENT_STD * (0.8 * steps * signs + 0.1 * torch.randn(num_domains, channels, generator=g))  # (D, C)
    ratio = torch.linspace(0.6, 1.4, num_domains)[:, None].expand(-1, channels)          # (D, C)
    stds = SD_LATENT_STD * ratio.clone()                                                 # (D, C)
    return means, stds


def _smooth_noise(n: int, channels: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Unit-variance spatially correlated noise (N, C, size, size): upsampled coarse noise + fine noise."""
    coarse = torch.randn(n, channels, max(2, size // 8), max(2, size // 8), generator=g)
    low = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)  # (N, C, S, S)
    fine = torch.randn(n, channels, size, size, generator=g)                              # (N, C, S, S)
    x = low + 0.5 * fine
    return x / x.std().clamp_min(1e-6)  # global scale: per-sample means vary like real latents


def make_latent_shards(root: str | Path, *, num_domains: int = 2, per_domain: int = 64, shards_per_domain: int = 2,
                       channels: int = 4, resolution: int = 32, seed: int = 0, key: str = "latents",
                       label_key: str = "labels") -> list[Path]:
    """Write ``num_domains·shards_per_domain`` shards of mixed-domain synthetic latents; returns their paths.

    Domain d: per-channel means/stds from ``domain_statistics(num_domains, channels, seed)`` on smooth noise,
    stored unscaled like SD-VAE latents (float32).
    """
    if per_domain < 1 or shards_per_domain < 1 or resolution < 4:
        raise LatentDataError(f"per_domain={per_domain}, shards_per_domain={shards_per_domain}, "
                              f"resolution={resolution}: need >= 1, >= 1, >= 4")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    means, stds = domain_statistics(num_domains, channels, seed)                     # (D, C) each
    g = torch.Generator().manual_seed(seed + 1)
    labels = torch.arange(num_domains).repeat_interleave(per_domain)                 # (N,)
    noise = _smooth_noise(labels.numel(), channels, resolution, g)                   # (N, C, S, S)
    latents = noise * stds[labels][:, :, None, None] + means[labels][:, :, None, None]  # (N, C, S, S)
    order = torch.randperm(labels.numel(), generator=g)
    latents, labels = latents[order].contiguous(), labels[order].contiguous()
    n_shards = num_domains * shards_per_domain
    paths = []
    for i, (lat, lab) in enumerate(zip(latents.tensor_split(n_shards), labels.tensor_split(n_shards))):
        path = root / f"shard_{i:05d}.pt"
        torch.save({key: lat.clone(), label_key: lab.clone().to(torch.int64)}, path)
        paths.append(path)
    log.info("wrote %d synthetic latent shards (%d domains × %d latents of %d×%d×%d) to %s", n_shards, num_domains,
             per_domain, channels, resolution, resolution, root)
    return paths


def list_shards(root: str | Path) -> list[str]:
    """A folder's ``*.pt``/``*.pth``/``*.npy``/``*.npz`` files (sorted), a glob, or one file."""
    p = Path(root)
    if p.is_dir():
        found = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in (".pt", ".pth", ".npy", ".npz"))
    elif any(c in str(root) for c in "*?["):
        found = sorted(str(f) for f in Path().glob(str(root)))
    else:
        found = [str(p)] if p.is_file() else []
    if not found:
        raise LatentDataError(f"data.root={str(root)!r} holds no latent shards (.pt/.pth/.npy/.npz files)")
    return found


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


def _read_shard(path: str, keys: List[str]) -> List[torch.Tensor]:
    """The arrays ``keys`` of one shard (``.pt``/``.pth`` by torch.load(weights_only=True), ``.npy``, ``.npz``)."""
    ext = os.path.splitext(path)[1].lower()

    def c_order(a: np.ndarray) -> torch.Tensor:  # the Rust loader refuses Fortran-order arrays
        if a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous:
            raise LatentUnsupportedError(f"{path}: Fortran-order arrays are not supported; save with "
                                         "np.ascontiguousarray")
        return torch.from_numpy(np.array(a))

    try:
        if ext == ".npy":
            if len(keys) != 1:
                raise LatentSchemaError(f"{path}: key '{keys[1]}': an .npy file holds one array; use .npz or .pt "
                                        "for several keys")
            arrays = [c_order(np.load(path, mmap_mode="r", allow_pickle=False))]
        elif ext == ".npz":
            with zipfile.ZipFile(path) as zf:  # the Rust loader maps members: stored (uncompressed) only
                deflated = [i.filename for i in zf.infolist() if i.compress_type != zipfile.ZIP_STORED]
            with np.load(path, allow_pickle=False) as z:
                for k in keys:
                    if k not in z.files:
                        raise LatentSchemaError(f"{path}: shard has no key {k!r} (found {sorted(z.files)})")
                    if k + ".npy" in deflated:
                        raise LatentUnsupportedError(f"{path}: key '{k}': compressed .npz members are not supported; "
                                                     "save with np.savez")
                arrays = [c_order(z[k]) for k in keys]
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            arrays = []
            for k in keys:
                t = _find_tensor(obj, k)
                if t is None:
                    found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                    raise LatentSchemaError(f"{path}: shard has no key {k!r} (found {found})")
                if not t.is_contiguous():
                    raise LatentSchemaError(f"{path}: key '{k}': tensor is not C-contiguous (size "
                                            f"{list(t.shape)}, stride {list(t.stride())}); save it with .contiguous()")
                arrays.append(t)
    except LatentDataError:
        raise
    except FileNotFoundError as exc:
        raise LatentShardNotFoundError(f"{path}: {exc.strerror} (os error {exc.errno})") from exc
    except Exception as exc:
        raise LatentShardReadError(f"{path}: cannot read latent shard: {type(exc).__name__}: {exc}") from exc
    for k, t in zip(keys, arrays):
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
    ``.npz``). ``key`` is a top-level key or a dotted path. The plan is :mod:`vqfast.data.plan`'s: a seeded
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
                    for k, (dt, shape), (dt0, shape0) in zip(keys, these, schema):
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
        self._fields = [(k, dt, shape) for k, (dt, shape) in zip(keys, schema)]
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


def check_labels(paths: Sequence[str], label_key: str, num_domains: int) -> None:
    """Pre-flight: every shard's labels lie in [0, num_domains); else LatentDataError naming shard and value.

    Reads only the label tensors (memory-mapped by vqfast.io.load_pt when available)."""
    try:
        from vqfast.io import load_pt
    except Exception:  # extension missing: torch's own reader, tensors only
        def load_pt(path):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    for path in paths:
        obj = load_pt(path)
        if not isinstance(obj, dict) or label_key not in obj:
            raise LatentDataError(f"{path}: no {label_key!r} entry (keys: {sorted(obj) if isinstance(obj, dict) else type(obj).__name__})")
        labels = torch.as_tensor(obj[label_key])
        if labels.numel() == 0:
            continue
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_domains:
            bad = lo if lo < 0 else hi
            raise LatentDataError(f"{path}: {label_key!r} holds {bad}, outside [0, {num_domains - 1}] "
                                  f"(model.num_domains={num_domains})")


def build_latent_loader(paths: Sequence[str], *, loader: str = "auto", key: str = "latents",
                        label_key: Optional[str] = "labels", batch_size: int, shuffle: bool = True, seed: int = 0,
                        rank: int = 0, world_size: int = 1, drop_last: bool = True,
                        num_threads: Optional[int] = None, prefetch: int = 4, block_shards: int = 4,
                        on_error: str = "raise"):
    """``vqfast.io.LatentShardLoader`` when available (``loader`` auto/rust), else ``TorchLatentShardLoader``."""
    if loader not in ("auto", "rust", "torch"):
        raise LatentDataError(f"data.loader={loader!r}; allowed: 'auto', 'rust', 'torch'")
    rust_cls = None
    if loader != "torch":
        try:
            from vqfast.io import LatentShardLoader as rust_cls
        except Exception as exc:  # extension missing or broken: the torch path still works
            if loader == "rust":
                raise LatentDataError(f"data.loader='rust' but vqfast.io.LatentShardLoader is unavailable: {exc}") \
                    from exc
            log.warning("vqfast.io.LatentShardLoader unavailable (%s): using the in-memory torch loader", exc)
    cls = rust_cls or TorchLatentShardLoader
    return cls(list(paths), key=key, label_key=label_key, batch_size=batch_size, shuffle=shuffle, seed=seed,
               rank=rank, world_size=world_size, drop_last=drop_last, num_threads=num_threads, prefetch=prefetch,
               block_shards=block_shards, on_error=on_error)


class ReferencePool:
    """Reference latents by domain: per-domain ring buffers (``capacity`` each) fed by a second shuffled loader.

    ``draw(y_trg)`` returns one latent of domain ``y_trg[i]`` per row, uniform over the buffer; each call first
    pulls one fresh batch so the pool keeps moving through the data.
    """

    def __init__(self, loader, num_domains: int, capacity: int, *, key: str = "latents", label_key: str = "labels",
                 seed: int = 0, max_fill_batches: int = 1000):
        self.loader, self.num_domains, self.capacity = loader, num_domains, capacity
        self.key, self.label_key, self.max_fill_batches = key, label_key, max_fill_batches
        self.generator = torch.Generator().manual_seed(seed)
        self.buffers: list[Optional[torch.Tensor]] = [None] * num_domains    # each (capacity, C, H, W)
        self.counts = [0] * num_domains
        self.heads = [0] * num_domains
        self._epoch = 0
        self._pos = 0                     # batches taken from the reference loader in this epoch
        self._it: Optional[Iterator] = None

    def _next_batch(self) -> dict[str, torch.Tensor]:
        for _ in range(2):
            if self._it is None:
                self.loader.set_epoch(self._epoch)
                self._it = iter(self.loader)
                for _ in range(self._pos):  # resumed mid-epoch: skip what the checkpointed run consumed
                    next(self._it)
            try:
                batch = next(self._it)
                self._pos += 1
                return batch
            except StopIteration:
                self._it = None
                self._epoch += 1
                self._pos = 0
        raise LatentDataError("reference loader yields no batch: lower train.batch_size or add shards")

    def _push(self, latents: torch.Tensor, labels: torch.Tensor) -> None:
        for d in labels.unique().tolist():
            if not 0 <= d < self.num_domains:
                raise LatentDataError(f"label {d} out of range: model.num_domains={self.num_domains}")
            rows = latents[labels == d]                                      # (n_d, C, H, W)
            if self.buffers[d] is None:
                self.buffers[d] = torch.empty((self.capacity, *rows.shape[1:]), dtype=rows.dtype)
            for row in rows[-self.capacity:]:
                self.buffers[d][self.heads[d]] = row
                self.heads[d] = (self.heads[d] + 1) % self.capacity
                self.counts[d] = min(self.counts[d] + 1, self.capacity)

    def state_dict(self) -> dict:
        """Everything a resumed run needs to draw the same references: buffers, ring heads, RNG, loader position."""
        return {"buffers": [b.clone() if b is not None else None for b in self.buffers], "counts": list(self.counts),
                "heads": list(self.heads), "generator": self.generator.get_state(), "epoch": self._epoch,
                "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self.buffers = [b.clone() if b is not None else None for b in state["buffers"]]
        self.counts, self.heads = list(state["counts"]), list(state["heads"])
        self.generator.set_state(state["generator"])
        self._epoch, self._pos, self._it = int(state["epoch"]), int(state["pos"]), None

    def pull(self) -> None:
        batch = self._next_batch()
        self._push(batch[self.key], batch[self.label_key].long())

    def draw(self, y_trg: torch.Tensor, *, pull: bool = True, generator: Optional[torch.Generator] = None
             ) -> torch.Tensor:
        """y_trg int64 (B,) on CPU → latents (B, C, H, W) of those domains.

        pull=False with a caller's generator leaves the pool untouched (sampling must not perturb training;
        it still pulls when a needed domain has no latent yet)."""
        if pull:
            self.pull()
        needed = set(y_trg.unique().tolist())
        for _ in range(self.max_fill_batches):
            missing = [d for d in needed if self.counts[d] == 0]
            if not missing:
                break
            self.pull()
        else:
            raise LatentDataError(f"no reference latent of domain(s) {missing} found in the shards "
                                  f"(model.num_domains={self.num_domains})")
        out = None
        for d in needed:
            rows = (y_trg == d).nonzero().squeeze(1)                         # (n_d,)
            pick = torch.randint(0, self.counts[d], (rows.numel(),), generator=generator or self.generator)
            chosen = self.buffers[d][pick]                                   # (n_d, C, H, W)
            if out is None:
                out = torch.empty((y_trg.numel(), *chosen.shape[1:]), dtype=chosen.dtype)
            out[rows] = chosen
        return out
