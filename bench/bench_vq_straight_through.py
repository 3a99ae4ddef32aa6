"""vq_straight_through (quantiser output + loss, fwd+bwd): Triton vs the reference autograd node and taming's
two-MSE graph. Memory-bound: reads z and gathered codes, writes z_q and dz."""
import pytest
import torch

import vqfast.ops as ops
from benchutil import CUDA, DEVICE, H100, QUICK, needs_cuda, run

SHAPES = [(3072, 1024, 256), (65536, 16384, 256)] if CUDA else ([(512, 128, 64)] if QUICK else [(3072, 1024, 256)])


def sid(s):
    return "N{}-K{}-D{}".format(*s)


def taming(z, cb, idx):
    q = cb[idx]
    loss = torch.mean((q.detach() - z) ** 2) + 0.25 * torch.mean((q - z.detach()) ** 2)
    return z + (q - z).detach(), loss


def step(fn, z, cb, idx, g):
    z_q, loss = fn(z, cb, idx)
    torch.autograd.grad((z_q * g).sum() + loss, (z, cb))


def inputs(N, K, D):
    z = torch.randn(N, D, device=DEVICE, requires_grad=True)
    cb = torch.randn(K, D, device=DEVICE, requires_grad=True)
    return z, cb, torch.randint(0, K, (N,), device=DEVICE), torch.randn(N, D, device=DEVICE)


def nbytes(N, K, D):
    return 6 * N * D * 4 + 2 * K * D * 4


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("provider", ["taming_eager", "torch_reference"])
def test_vq_st_reference_paths(benchmark, shape, provider):
    z, cb, idx, g = inputs(*shape)
    fn = taming if provider == "taming_eager" else (
        lambda a, b, i: ops.reference.vq_straight_through(a, b, i, c_commit=1.0, c_book=0.25))
    run(benchmark, "vq_st_fwdbwd", sid(shape), provider, lambda: step(fn, z, cb, idx, g),
        nbytes=nbytes(*shape), bound_s=nbytes(*shape) / H100["hbm"])


@needs_cuda
@pytest.mark.parametrize("shape", SHAPES, ids=sid)
def test_vq_st_triton(benchmark, shape):
    z, cb, idx, g = inputs(*shape)
    fast = lambda a, b, i: ops.vq_straight_through(a, b, i, c_commit=1.0, c_book=0.25, backend="triton")  # noqa: E731
    run(benchmark, "vq_st_fwdbwd", sid(shape), "triton", lambda: step(fast, z, cb, idx, g),
        ref_fn=lambda: step(taming, z, cb, idx, g), nbytes=nbytes(*shape), bound_s=nbytes(*shape) / H100["hbm"],
        note="ref=taming eager")
    out = fast(z, cb, idx)
    ref = taming(z, cb, idx)
    torch.testing.assert_close(out[0], ref[0])
    torch.testing.assert_close(out[1], ref[1], atol=1e-5, rtol=1e-5)
