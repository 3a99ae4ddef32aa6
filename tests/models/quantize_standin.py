"""Private stand-in for ``vqfast.quantize`` used only while that package has not landed.

Implements the DESIGN.md contract in plain torch (taming VectorQuantizer2 / EMA semantics) so the
model, loss and engine tests run. ``install()`` registers it only if the real package is missing.
"""
from __future__ import annotations

import importlib
import sys
import types

import torch
import torch.nn as nn
import torch.nn.functional as F


def _flatten(z):
    perm = [0] + list(range(2, z.dim())) + [1]
    zf = z.permute(*perm).contiguous()  # (B, *S, C)
    return zf, zf.reshape(-1, z.shape[1])


def _unflatten(q_flat, zf_shape):
    q = q_flat.reshape(zf_shape)
    perm = [0, q.dim() - 1] + list(range(1, q.dim() - 1))
    return q.permute(*perm).contiguous()


def _perplexity(idx, k):
    p = torch.bincount(idx, minlength=k).float() / idx.numel()
    return torch.exp(-(p * torch.log(p + 1e-10)).sum())


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed, embed_dim, beta=0.25, legacy=True, backend="auto"):
        super().__init__()
        self.n_embed, self.embed_dim, self.beta, self.legacy = n_embed, embed_dim, beta, legacy
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)

    def forward(self, z):
        zf, flat = _flatten(z)
        w = self.embedding.weight
        d = flat.pow(2).sum(1, keepdim=True) + w.pow(2).sum(1) - 2 * flat @ w.t()
        idx = d.argmin(1)
        q = w[idx]
        if self.legacy:
            loss = F.mse_loss(q.detach(), flat) + self.beta * F.mse_loss(q, flat.detach())
        else:
            loss = self.beta * F.mse_loss(q.detach(), flat) + F.mse_loss(q, flat.detach())
        q = flat + (q - flat).detach()
        self._last = _perplexity(idx, self.n_embed)
        return _unflatten(q, zf.shape), loss, (self._last, None, idx)

    def get_codebook_entry(self, indices, shape):
        q = self.embedding.weight[indices.reshape(-1)]
        if shape is None:
            return q
        return q.reshape(shape).permute(0, 3, 1, 2).contiguous()

    def codebook_metrics(self):
        return {"perplexity": getattr(self, "_last", torch.ones(()))}


class _EMAEmbedding(nn.Module):
    def __init__(self, n, d):
        super().__init__()
        self.register_buffer("weight", torch.randn(n, d))
        self.register_buffer("cluster_size", torch.zeros(n))
        self.register_buffer("embed_avg", self.weight.clone())


class EMAVectorQuantizer(nn.Module):
    def __init__(self, n_embed, embed_dim, beta=0.25, decay=0.99, eps=1e-5, backend="auto"):
        super().__init__()
        self.n_embed, self.embed_dim, self.beta, self.decay, self.eps = n_embed, embed_dim, beta, decay, eps
        self.embedding = _EMAEmbedding(n_embed, embed_dim)

    def forward(self, z):
        zf, flat = _flatten(z)
        w = self.embedding.weight
        d = flat.pow(2).sum(1, keepdim=True) + w.pow(2).sum(1) - 2 * flat.detach() @ w.t()
        idx = d.argmin(1)
        q = w[idx]
        if self.training:
            with torch.no_grad():
                e = self.embedding
                counts = torch.bincount(idx, minlength=self.n_embed).to(flat.dtype)
                sums = torch.zeros_like(e.embed_avg).index_add_(0, idx, flat.detach().float())
                e.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
                e.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
                n = e.cluster_size.sum()
                smoothed = (e.cluster_size + self.eps) / (n + self.n_embed * self.eps) * n
                e.weight.copy_(e.embed_avg / smoothed.unsqueeze(1))
        loss = self.beta * F.mse_loss(q.detach(), flat)
        q = flat + (q - flat).detach()
        self._last = _perplexity(idx, self.n_embed)
        return _unflatten(q, zf.shape), loss, (self._last, None, idx)

    get_codebook_entry = VectorQuantizer.get_codebook_entry
    codebook_metrics = VectorQuantizer.codebook_metrics


def install() -> bool:
    """Register the stand-in as ``vqfast.quantize`` if the real one is missing; True if installed."""
    try:
        mod = importlib.import_module("vqfast.quantize")
        if hasattr(mod, "VectorQuantizer") and hasattr(mod, "EMAVectorQuantizer"):
            return False
    except ImportError:
        pass
    mod = types.ModuleType("vqfast.quantize")
    mod.VectorQuantizer, mod.EMAVectorQuantizer = VectorQuantizer, EMAVectorQuantizer
    sys.modules["vqfast.quantize"] = mod
    import vqfast
    vqfast.quantize = mod
    return True
