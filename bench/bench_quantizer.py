"""Whole quantizer forward+backward at VQGAN-typical shapes: vqfast (Triton / torch backend) vs a literal
taming VectorQuantizer2 and taming-style EMA quantizer. Launch- and sync-bound regime."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchutil import CUDA, DEVICE, QUICK, needs_cuda, run
from vqfast.quantize import EMAVectorQuantizer, VectorQuantizer

if CUDA:
    SHAPES = [(12, 256, 16, 16, 1024), (8, 256, 32, 32, 16384), (16, 32, 32, 32, 8192)]
elif QUICK:
    SHAPES = [(2, 64, 8, 8, 128)]
else:
    SHAPES = [(12, 256, 16, 16, 1024)]


def sid(s):
    return "B{}-C{}-{}x{}-K{}".format(*s)


class TamingVQ2(nn.Module):
    """taming VectorQuantizer2.forward (legacy=True) as written, for the baseline."""

    def __init__(self, n_e, e_dim, beta=0.25):
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(n_e, e_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_e, 1.0 / n_e)

    def forward(self, z):
        z = z.permute(0, 2, 3, 1).contiguous()
        zf = z.view(-1, z.shape[-1])
        w = self.embedding.weight
        d = (zf ** 2).sum(1, keepdim=True) + (w ** 2).sum(1) - 2 * torch.einsum("bd,dn->bn", zf, w.t())
        idx = torch.argmin(d, dim=1)
        zq = self.embedding(idx).view(z.shape)
        loss = torch.mean((zq.detach() - z) ** 2) + self.beta * torch.mean((zq - z.detach()) ** 2)
        zq = z + (zq - z).detach()
        return zq.permute(0, 3, 1, 2).contiguous(), loss, idx


class TamingEMA(nn.Module):
    """taming EMAVectorQuantizer semantics (one-hot EMA) as the eager baseline."""

    def __init__(self, n_e, e_dim, beta=0.25, decay=0.99, eps=1e-5):
        super().__init__()
        self.beta, self.decay, self.eps = beta, decay, eps
        w = torch.randn(n_e, e_dim)
        self.register_buffer("weight", w)
        self.register_buffer("cluster_size", torch.zeros(n_e))
        self.register_buffer("embed_avg", w.clone())

    def forward(self, z):
        z = z.permute(0, 2, 3, 1).contiguous()
        zf = z.view(-1, z.shape[-1])
        w = self.weight
        d = (zf ** 2).sum(1, keepdim=True) + (w ** 2).sum(1) - 2 * zf @ w.t()
        idx = d.argmin(1)
        zq = F.embedding(idx, w).view(z.shape)
        onehot = F.one_hot(idx, w.shape[0]).type(z.dtype)
        with torch.no_grad():
            self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
            self.embed_avg.mul_(self.decay).add_(onehot.t() @ zf.detach(), alpha=1 - self.decay)
            n = self.cluster_size.sum()
            sm = (self.cluster_size + self.eps) / (n + w.shape[0] * self.eps) * n
            self.weight.copy_(self.embed_avg / sm.unsqueeze(1))
        loss = self.beta * F.mse_loss(zq.detach(), z)
        zq = z + (zq - z).detach()
        avg = onehot.mean(0)
        perplexity = torch.exp(-torch.sum(avg * torch.log(avg + 1e-10)))
        return zq.permute(0, 3, 1, 2).contiguous(), loss, (perplexity, onehot, idx)


def step(q, z):
    zq, loss, _ = q(z)
    torch.autograd.grad(zq.square().mean() + loss, z)


def build(kind, impl, C, K):
    if kind == "vq":
        return TamingVQ2(K, C) if impl == "taming" else VectorQuantizer(K, C, backend=impl)
    return TamingEMA(K, C) if impl == "taming" else EMAVectorQuantizer(K, C, backend=impl)


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("kind", ["vq", "ema"])
def test_quantizer_vector_quantize_pytorch(benchmark, shape, kind):
    """Optional baseline (c): lucidrains' vector-quantize-pytorch, when installed."""
    vqp = pytest.importorskip("vector_quantize_pytorch")
    B, C, H, W, K = shape
    q = vqp.VectorQuantize(dim=C, codebook_size=K, decay=0.99, commitment_weight=0.25, accept_image_fmap=True,
                           ema_update=(kind == "ema"), learnable_codebook=(kind == "vq")).to(DEVICE).train()
    z = torch.randn(B, C, H, W, device=DEVICE, requires_grad=True)

    def vqp_step():
        zq, _, loss = q(z)
        torch.autograd.grad(zq.square().mean() + loss.sum(), z)

    run(benchmark, f"{kind}_fwd_bwd", sid(shape), "vector_quantize_pytorch", vqp_step)


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("kind", ["vq", "ema"])
@pytest.mark.parametrize("impl", ["taming", "torch"])
def test_quantizer_reference_paths(benchmark, shape, kind, impl):
    B, C, H, W, K = shape
    q = build(kind, impl, C, K).to(DEVICE).train()
    z = torch.randn(B, C, H, W, device=DEVICE, requires_grad=True)
    run(benchmark, f"{kind}_fwd_bwd", sid(shape), f"{impl}_eager", lambda: step(q, z))


@needs_cuda
@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("kind", ["vq", "ema"])
def test_quantizer_triton(benchmark, shape, kind):
    B, C, H, W, K = shape
    q = build(kind, "triton", C, K).to(DEVICE).train()
    base = build(kind, "taming", C, K).to(DEVICE).train()
    z = torch.randn(B, C, H, W, device=DEVICE, requires_grad=True)
    run(benchmark, f"{kind}_fwd_bwd", sid(shape), "vqfast_triton", lambda: step(q, z), ref_fn=lambda: step(base, z),
        note="ref=taming eager")
    # same weights -> same codes and loss as the taming module
    q.eval()
    base.eval()
    with torch.no_grad():
        if kind == "vq":
            base.embedding.weight.copy_(q.embedding.weight)
        else:
            base.weight.copy_(q.embedding.weight)
    zq, loss, (_, _, idx) = q(z)
    bzq, bloss, bidx = base(z) if kind == "vq" else base(z)[:3]
    if kind == "ema":
        bidx = bidx[2]
    agree = (idx == bidx).float().mean().item()
    assert agree > 0.999, f"only {agree:.4f} of the codes agree with taming"
