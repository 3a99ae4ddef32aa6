"""Shared machinery of the quantizers: layouts, codebook health, dead-code restart, k-means init, DDP sync.

Health is tracked on device with no host sync: per-code `steps_unused` counters, an EMA of usage, and
cumulative restarts; k-means init over all ranks' rows (vqfast.quantize.kmeans);
`codebook_metrics()` returns 0-dim tensors the trainer reads at log time.
Health buffers are persistent (exact resume) but optional on load, so taming checkpoints that only hold
`embedding.*` load with strict=True.
"""
from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from vqfast.errors import InputError
from vqfast.ops import codebook_health_, nearest_code
from vqfast.ops._dispatch import check_backend_name
from vqfast.ops.nearest_code import PRECISIONS
from vqfast.quantize._dist import ddp_active
from vqfast.quantize.kmeans import kmeans

log = logging.getLogger("vqfast")

Layout = Literal["channels_first", "channels_last"]
_HEALTH_BUFFERS = ("steps_unused", "usage_ema", "restarted_codes", "initted")


class QuantizerBase(nn.Module):
    """Common state of VectorQuantizer and EMAVectorQuantizer (subclasses own `embedding`)."""

    def __init__(self, n_embed: int, embed_dim: int, beta: float, *, backend: str, precision: str,
                 layout: Layout, sane_index_shape: bool, dead_code_steps: int, restart_dead_codes: bool,
                 kmeans_init: bool, kmeans_iters: int, usage_decay: float, sync_ddp: bool,
                 kmeans_init_method: str = "random"):
        super().__init__()
        if int(n_embed) < 1:
            raise InputError(f"n_embed={n_embed} must be >= 1")
        if int(embed_dim) < 1:
            raise InputError(f"embed_dim={embed_dim} must be >= 1")
        if layout not in ("channels_first", "channels_last"):
            raise InputError(f"layout={layout!r} is not one of ('channels_first', 'channels_last')")
        if precision not in PRECISIONS:
            raise InputError(f"precision={precision!r} is not one of {PRECISIONS}")
        if dead_code_steps < 1:
            raise InputError(f"dead_code_steps={dead_code_steps} must be >= 1")
        if kmeans_init_method not in ("random", "kmeans++"):
            raise InputError(f"kmeans_init_method={kmeans_init_method!r} is not one of ('random', 'kmeans++')")
        if not 0.0 <= usage_decay < 1.0:
            raise InputError(f"usage_decay={usage_decay} must be in [0, 1)")
        self.n_embed = self.n_e = int(n_embed)
        self.embed_dim = self.e_dim = int(embed_dim)
        self.beta = float(beta)
        self.backend = check_backend_name(backend)
        self.precision = precision
        self.layout = layout
        self.sane_index_shape = sane_index_shape
        self.dead_code_steps = int(dead_code_steps)
        self.restart_dead_codes = restart_dead_codes
        self.kmeans_init = kmeans_init
        self.kmeans_iters = int(kmeans_iters)
        self.kmeans_init_method = kmeans_init_method
        self.usage_decay = float(usage_decay)
        self.sync_ddp = sync_ddp
        K = self.n_embed
        self.register_buffer("steps_unused", torch.zeros(K, dtype=torch.int64))
        self.register_buffer("usage_ema", torch.full((K,), 1.0 / K))
        self.register_buffer("restarted_codes", torch.zeros((), dtype=torch.int64))
        self.register_buffer("initted", torch.tensor(not kmeans_init))
        self._initted = not kmeans_init          # host mirror of `initted`: no sync per forward
        self._last_metrics: dict[str, torch.Tensor] = {}

    # ---- layout -------------------------------------------------------------------------------
    def _flatten(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            raise InputError(f"{type(self).__name__}: z must be a floating-point tensor, got "
                             f"{getattr(z, 'dtype', type(z).__name__)}")
        if z.dim() < 2:
            raise InputError(f"{type(self).__name__}: z must have >= 2 dims, got shape {tuple(z.shape)}")
        cdim = 1 if self.layout == "channels_first" else -1
        if z.shape[cdim] != self.embed_dim:
            raise InputError(f"{type(self).__name__}: z has {z.shape[cdim]} channels on dim {cdim} "
                             f"(shape {tuple(z.shape)}, layout={self.layout!r}); expected embed_dim={self.embed_dim}")
        if self.layout == "channels_first":
            z = z.movedim(1, -1)                                     # (B, *S, C)
        return z.reshape(-1, self.embed_dim)                         # (N, D)

    def _unflatten(self, z_q: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.layout == "channels_first":
            shape = (like.shape[0], *like.shape[2:], like.shape[1])
            return z_q.view(shape).movedim(-1, 1)                    # (B, C, *S)
        return z_q.view(like.shape)

    def set_remap(self, used: torch.Tensor, unknown_index="random") -> None:
        """taming ``remap``: returned codes become positions in ``used`` (see ``vqfast.quantize.remap``); the
        buffer ``used`` is saved with the model, as taming's."""
        from vqfast.quantize.remap import reduced_vocab

        self.re_embed, self.unknown_index = reduced_vocab(used, unknown_index)
        self.register_buffer("used", used.to(torch.int64).clone())

    def _remapped(self, idx: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if getattr(self, "used", None) is None:
            return idx
        from vqfast.quantize.remap import remap_to_used

        return remap_to_used(idx.view(like.shape[0], -1), self.used, self.unknown_index, self.re_embed).reshape(-1)

    def _index_shape(self, idx: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        idx = self._remapped(idx, like)
        if not self.sane_index_shape:
            return idx
        if self.layout == "channels_first":
            return idx.view(like.shape[0], *like.shape[2:])
        return idx.view(like.shape[:-1])

    def get_codebook_entry(self, indices: torch.Tensor, shape=None) -> torch.Tensor:
        """Codes for `indices` (positions in `used` under a remap); with `shape` = (B, *S, C) the result is
        permuted to channels-first."""
        if getattr(self, "used", None) is not None:
            from vqfast.quantize.remap import unmap_to_all

            batch = shape[0] if shape is not None else 1
            indices = unmap_to_all(indices.reshape(batch, -1).long(), self.used)
        z_q = self.embedding.weight.index_select(0, indices.reshape(-1).long())  # (N, D)
        if shape is not None:
            z_q = z_q.view(shape)
            if self.layout == "channels_first":
                z_q = z_q.movedim(-1, 1).contiguous()
        return z_q

    # ---- lookup -------------------------------------------------------------------------------
    def _lookup(self, z_flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(idx int64 (N,), counts fp32 (K,)); counts are global under DDP (one small all-reduce)."""
        idx, _, counts = nearest_code(z_flat.detach(), self.embedding.weight.detach(), backend=self.backend,
                                      precision=self.precision, check_values=False, return_counts=True)
        if self.sync_ddp and self.training and ddp_active():
            dist.all_reduce(counts)
        return idx, counts

    # ---- health -------------------------------------------------------------------------------
    def _update_health(self, counts: torch.Tensor, training: bool) -> None:
        """counts: (K,) fp32 assignments of this step. One fused launch on the Triton backend."""
        out = codebook_health_(counts, self.steps_unused, self.usage_ema, training=training,
                               usage_decay=self.usage_decay, dead_code_steps=self.dead_code_steps,
                               backend=self.backend)                  # (4,) fp32, no host sync
        self._last_metrics = {"perplexity": out[0], "usage_perplexity": out[1], "active_codes": out[2],
                              "dead_codes": out[3], "restarted_codes": self.restarted_codes}

    def codebook_metrics(self) -> dict[str, torch.Tensor]:
        """0-dim tensors from the last forward: perplexity (batch), usage_perplexity (EMA of usage),
        active_codes (batch), dead_codes (unused for >= dead_code_steps training steps), restarted_codes."""
        return dict(self._last_metrics)

    @torch.no_grad()
    def _restart_dead(self, z_flat: torch.Tensor) -> None:
        """Replace codes unused for >= dead_code_steps steps by random rows of this batch (no host sync)."""
        dead = self.steps_unused >= self.dead_code_steps              # (K,) bool
        pick = torch.randint(0, z_flat.shape[0], (self.n_embed,), device=z_flat.device)
        sample = z_flat.detach().float().index_select(0, pick)        # (K, D)
        if self.sync_ddp and ddp_active():
            dist.broadcast(dead, 0)
            dist.broadcast(sample, 0)
        self._reset_codes(dead, sample)
        self.steps_unused.masked_fill_(dead, 0)
        self.restarted_codes.add_(dead.sum())

    def _reset_codes(self, dead: torch.Tensor, sample: torch.Tensor) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def _kmeans(self, z_flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k-means (vqfast.quantize.kmeans) on this batch, all ranks' rows under DDP (identical result on every
        rank): (centroids (K, D) fp32, counts (K,)); random draws from torch's RNG (rank 0's under DDP)."""
        return kmeans(z_flat.detach(), self.n_embed, iters=max(1, self.kmeans_iters), init=self.kmeans_init_method,
                      backend=self.backend, sync_ddp=self.sync_ddp)

    def _maybe_kmeans_init(self, z_flat: torch.Tensor) -> None:
        if self._initted or not self.training:
            return
        centroids, counts = self._kmeans(z_flat)
        self._set_from_kmeans(centroids, counts)
        self.initted.fill_(True)
        self._initted = True
        log.info("%s: k-means initialised %d codes on a batch of %d vectors", type(self).__name__,
                 self.n_embed, z_flat.shape[0])

    def _set_from_kmeans(self, centroids: torch.Tensor, counts: torch.Tensor) -> None:
        raise NotImplementedError

    # ---- checkpoints ---------------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # taming checkpoints carry only `embedding.*`: keep our health buffers when theirs are absent.
        for name in _HEALTH_BUFFERS:
            key = prefix + name
            if key not in state_dict:
                state_dict[key] = getattr(self, name)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self._initted = bool(self.initted)

    def extra_repr(self) -> str:
        return (f"n_embed={self.n_embed}, embed_dim={self.embed_dim}, beta={self.beta}, backend={self.backend!r}, "
                f"precision={self.precision!r}, layout={self.layout!r}")
