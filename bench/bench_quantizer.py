"""Whole quantizer forward+backward at VQGAN-typical shapes: vqfast (Triton on CUDA; its torch backend on CPU)
against a literal taming VectorQuantizer2 / taming-style EMA quantizer, vqfast's own torch backend, and
torch.compile of the fastest eager one; the strongest is named (lucidrains' vector-quantize-pytorch is timed
as its own row when installed). Launch- and sync-bound regime. Target (issue 13): fwd+bwd >= 2x taming at
(3072, 1024, 256) = B12-C256-16x16-K1024. Codes and loss of every path are checked afterwards from one
common codebook against fp64 nearest codes."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchutil import CUDA, DEVICE, Baseline, compare, run, shapes
from vqfast.quantize import EMAVectorQuantizer, VectorQuantizer

SHAPES = shapes(target=[(12, 256, 16, 16, 1024)], extra=[(8, 256, 32, 32, 16384), (16, 32, 32, 32, 8192)],
                cpu=[(12, 256, 16, 16, 1024)], quick=[(2, 64, 8, 8, 128)])


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
    zq, loss, info = q(z)
    torch.autograd.grad(zq.square().mean() + loss, z)
    return info[-1] if isinstance(info, tuple) else info, loss


def build(kind, impl, C, K):
    if kind == "vq":
        return TamingVQ2(K, C) if impl == "taming" else VectorQuantizer(K, C, backend=impl)
    return TamingEMA(K, C) if impl == "taming" else EMAVectorQuantizer(K, C, backend=impl)


@torch.no_grad()
def set_codebook(q, w0):
    """One common codebook (and fresh EMA state) for the output check."""
    if isinstance(q, TamingVQ2):
        q.embedding.weight.copy_(w0)
    elif isinstance(q, TamingEMA):
        q.weight.copy_(w0)
        q.embed_avg.copy_(w0)
        q.cluster_size.zero_()
    elif isinstance(q, EMAVectorQuantizer):
        q.embedding.weight.copy_(w0)
        q.embedding.embed_avg.copy_(w0)
        q.embedding.cluster_size.zero_()
    else:
        q.embedding.weight.copy_(w0)


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("kind", ["vq", "ema"])
def test_quantizer_vector_quantize_pytorch(benchmark, shape, kind):
    """lucidrains' vector-quantize-pytorch, when installed (its own row: its codebook layout differs)."""
    vqp = pytest.importorskip("vector_quantize_pytorch")
    B, C, H, W, K = shape
    q = vqp.VectorQuantize(dim=C, codebook_size=K, decay=0.99, commitment_weight=0.25, accept_image_fmap=True,
                           ema_update=(kind == "ema"), learnable_codebook=(kind == "vq")).to(DEVICE).train()
    z = torch.randn(B, C, H, W, device=DEVICE, requires_grad=True)

    def vqp_step():
        zq, idx, loss = q(z)
        torch.autograd.grad(zq.square().mean() + loss.sum(), z)
        return idx, loss

    run(benchmark, f"{kind}_fwd_bwd", sid(shape), "vector_quantize_pytorch", vqp_step)
    idx, loss = vqp_step()
    assert idx.numel() == B * H * W and 0 <= int(idx.min()) and int(idx.max()) < K and torch.isfinite(loss).all()


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("kind", ["vq", "ema"])
def test_quantizer(benchmark, shape, kind):
    B, C, H, W, K = shape
    q = build(kind, "auto", C, K).to(DEVICE).train()
    z = torch.randn(B, C, H, W, device=DEVICE, requires_grad=True)
    w0 = q.embedding.weight.detach().clone()
    zf = z.detach().permute(0, 2, 3, 1).reshape(-1, C).double()
    d = torch.cdist(zf, w0.double())
    best = d.argmin(1)
    mse = (w0.double()[best] - zf).square().mean()
    want_loss = (1.25 if kind == "vq" else 0.25) * mse                # legacy VQ: (1 + beta); EMA: beta

    def check(name, run, args):
        module = q if args is None else args[0]
        set_codebook(module, w0)
        idx, loss = run()
        agree = (idx.reshape(-1) == best).float().mean().item()
        assert agree > 0.999, f"{name}: only {agree:.4f} of the codes are the nearest ones"
        torch.testing.assert_close(loss.double(), want_loss, atol=1e-4, rtol=1e-3, msg=name)

    base = {"taming_eager": Baseline(step, (build(kind, "taming", C, K).to(DEVICE).train(), z)),
            # vqfast's own torch backend calls the ops' custom autograd.Function: no compile pick
            "vqfast_torch_backend": Baseline(step, (build(kind, "torch", C, K).to(DEVICE).train(), z),
                                             compile=False)}
    compare(benchmark, f"{kind}_fwd_bwd", sid(shape), "vqfast_triton" if CUDA else "vqfast_torch",
            lambda: step(q, z), base, check=check, primary=shape == SHAPES[0])
