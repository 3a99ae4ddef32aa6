"""Latent shards for the latent StarGAN v2: synthetic SD-VAE-like shards, the loader choice, reference pools.

A shard is a ``torch.save`` file holding ``{"latents": float32 (N, C, H, W) unscaled, "labels": int64 (N,)}``.
``vqfast.io.LatentShardLoader`` (Rust) reads them; ``vqfast.loaders.latents.TorchLatentShardLoader`` is its
pure-Python reference (same arguments, plan, batches, state and skip rule).

The seed-003 project's own layout is also read (``DomainFolderLatents``): ``root/<domain>/<file>.pt|.npy``, one
latent per file (a tensor, or a dict with ``latent``/``x``/first value; ``1×C×H×W`` squeezed), preloaded per
domain, with the original epoch sampler (``dataset.py`` ``LatentMultiDomainDataset.set_epoch``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

from vqfast.loaders.latents import LatentDataError, TorchLatentShardLoader

log = logging.getLogger("vqfast")

__all__ = ["SD_LATENT_STD", "domain_statistics", "make_latent_shards", "list_shards", "build_latent_loader",
           "check_labels", "ReferencePool", "LatentDataError", "read_latent_file", "domain_files",
           "DomainFolderLatents"]

SD_LATENT_STD = 1.0 / 0.18215
"""Unscaled SD-1.5 VAE latents have roughly this std (that is what latent_scale normalises)."""


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
    for i, (lat, lab) in enumerate(zip(latents.tensor_split(n_shards), labels.tensor_split(n_shards), strict=True)):
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


# ---- seed 003's own layout: root/<domain>/<file>.pt|.npy, one latent per file ------------------------------

_FILE_EXTS = (".pt", ".npy")


def _unwrap_latent(obj, path: str) -> torch.Tensor:
    """seed 003 ``dataset.py`` ``_load_latent_tensor``: dict → ``latent``, else ``x``, else its first value;
    float32; a leading batch axis of 1 squeezed; must then be (C, H, W)."""
    if isinstance(obj, dict):
        if not obj:
            raise LatentDataError(f"{path}: empty dict, expected a latent tensor")
        obj = obj["latent"] if "latent" in obj else obj["x"] if "x" in obj else next(iter(obj.values()))
    if not isinstance(obj, torch.Tensor):
        try:
            obj = torch.as_tensor(obj)
        except Exception as exc:
            raise LatentDataError(f"{path}: holds {type(obj).__name__}, expected a latent tensor") from exc
    t = obj.float()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t.squeeze(0)
    if t.dim() != 3:
        raise LatentDataError(f"{path}: expected a latent of shape [C, H, W] (or [1, C, H, W]), got "
                              f"{tuple(obj.shape)}")
    return t.contiguous()


def read_latent_file(path: str | Path, reader: str = "auto") -> torch.Tensor:
    """One per-file latent → float32 (C, H, W).

    ``.pt``: ``vqfast.io.load_pt`` (the Rust zip/pickle reader, zero-copy) for ``reader`` auto/rust, ``torch.load``
    (``weights_only=True``) for ``torch`` — the reference the Rust path is tested against; ``.npy``: numpy."""
    path = str(path)
    if reader not in ("auto", "rust", "torch"):
        raise LatentDataError(f"data.loader={reader!r}; allowed: 'auto', 'rust', 'torch'")
    try:
        if path.lower().endswith(".npy"):
            import numpy as np
            return _unwrap_latent(torch.from_numpy(np.load(path, allow_pickle=False)), path)
        load = None
        if reader != "torch":
            try:
                from vqfast.io import load_pt as load
            except Exception as exc:
                if reader == "rust":
                    raise LatentDataError(f"data.loader='rust' but vqfast.io.load_pt is unavailable: {exc}") from exc
        if load is None:
            def load(p):
                return torch.load(p, map_location="cpu", weights_only=True)
        obj = load(path)
    except LatentDataError:
        raise
    except Exception as exc:
        raise LatentDataError(f"{path}: cannot read the latent ({type(exc).__name__}: {exc})") from exc
    return _unwrap_latent(obj, path)


def domain_files(root: str | Path, domains: Sequence[str]) -> list[list[Path]]:
    """Per domain, its ``*.pt`` and ``*.npy`` files (sorted, as seed 003); errors name the missing folder."""
    root = Path(root)
    if not root.is_dir():
        raise LatentDataError(f"data root {str(root)!r} is not a directory (expected one sub-folder per domain)")
    out = []
    for d in domains:
        folder = root / d
        if not folder.is_dir():
            raise LatentDataError(f"domain directory not found: {folder} (data.domains lists {d!r})")
        files = sorted([*folder.glob("*.pt"), *folder.glob("*.npy")])
        if not files:
            raise LatentDataError(f"no .pt/.npy latent files in {folder}")
        out.append(files)
    return out


class DomainFolderLatents:
    """seed 003's ``LatentMultiDomainDataset`` + its ``DataLoader(shuffle=False)``, as a vqfast loader.

    Every domain's files are read once (``read_latent_file``) and stacked. ``set_epoch(e)`` draws the epoch's plan
    exactly as the original ``set_epoch(epoch_base + e)``: ``torch.Generator`` seeded ``epoch + 12345``; source
    domain uniform; target = (source + U{1..N−1}) mod N; file = U{0..max_count−1} mod domain size, for source
    then target. Batches: ``{content, target_style, target_style_id, source_style_id}`` (unscaled latents), in
    plan order; ``epoch_size`` defaults to max files per domain × N. Ranks take ``plan[rank::world_size]``.
    """

    def __init__(self, root: str | Path, domains: Sequence[str], *, batch_size: int, epoch_size: Optional[int] = None,
                 drop_last: bool = True, reader: str = "auto", epoch_base: int = 1, rank: int = 0,
                 world_size: int = 1):
        if len(domains) < 2:
            raise LatentDataError(f"data.domains={list(domains)}: need at least two domains")
        self.root, self.domains = str(root), list(domains)
        self.num_domains = len(self.domains)
        self.files = domain_files(root, self.domains)
        self.tensors = []                                                        # per domain (n_d, C, H, W)
        for files in self.files:
            stack = [read_latent_file(f, reader) for f in files]
            shapes = {tuple(t.shape) for t in stack}
            if len(shapes) != 1:
                raise LatentDataError(f"{files[0].parent}: latents of different shapes {sorted(shapes)}")
            self.tensors.append(torch.stack(stack))
        shapes = {tuple(t.shape[1:]) for t in self.tensors}
        if len(shapes) != 1:
            raise LatentDataError(f"{self.root}: domains hold latents of different shapes {sorted(shapes)}")
        self.sizes = torch.tensor([len(f) for f in self.files], dtype=torch.long)
        self.epoch_size = int(epoch_size) if epoch_size is not None else int(self.sizes.max()) * self.num_domains
        self.batch_size, self.drop_last = batch_size, drop_last
        self.epoch_base, self.rank, self.world_size = epoch_base, rank, world_size
        self.errors: list = []
        self._epoch, self._batch = 0, 0

    @staticmethod
    def steps_per_epoch(epoch_size: int, batch_size: int, drop_last: bool = True) -> int:
        return epoch_size // batch_size if drop_last else -(-epoch_size // batch_size)

    def plan(self, epoch: int) -> dict[str, torch.Tensor]:
        """The original's per-epoch index tensors (each (epoch_size,) int64) for engine epoch ``epoch``."""
        g = torch.Generator().manual_seed(int(self.epoch_base + epoch) + 12345)
        n, size = self.num_domains, self.epoch_size
        src = torch.randint(0, n, (size,), generator=g, dtype=torch.long)
        tgt = (src + torch.randint(1, n, (size,), generator=g, dtype=torch.long)) % n
        top = int(self.sizes.max())
        src_file = torch.randint(0, top, (size,), generator=g, dtype=torch.long) % self.sizes[src]
        tgt_file = torch.randint(0, top, (size,), generator=g, dtype=torch.long) % self.sizes[tgt]
        return {"src": src, "tgt": tgt, "src_file": src_file, "tgt_file": tgt_file}

    def __len__(self) -> int:
        per_rank = len(range(self.rank, self.epoch_size, self.world_size))
        return self.steps_per_epoch(per_rank, self.batch_size, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        self._epoch, self._batch = int(epoch), 0

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "batch": self._batch}

    def load_state_dict(self, state: dict) -> None:
        self._epoch, self._batch = int(state["epoch"]), int(state.get("batch", 0))

    def _gather(self, domains: torch.Tensor, files: torch.Tensor) -> torch.Tensor:
        out = torch.empty((domains.numel(), *self.tensors[0].shape[1:]))
        for d in domains.unique().tolist():
            rows = (domains == d).nonzero().squeeze(1)
            out[rows] = self.tensors[d][files[rows]]
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        plan = {k: v[self.rank::self.world_size] for k, v in self.plan(self._epoch).items()}
        bs = self.batch_size
        for b in range(self._batch, len(self)):
            sl = slice(b * bs, (b + 1) * bs)
            src, tgt = plan["src"][sl], plan["tgt"][sl]
            self._batch = b + 1
            yield {"content": self._gather(src, plan["src_file"][sl]),
                   "target_style": self._gather(tgt, plan["tgt_file"][sl]),
                   "target_style_id": tgt.clone(), "source_style_id": src.clone()}

    def first_per_domain(self) -> torch.Tensor:
        """(N, C, H, W): each domain's first latent (the original's evaluation grid inputs)."""
        return torch.stack([t[0] for t in self.tensors])
