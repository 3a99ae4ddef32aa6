"""vq_straight_through (quantiser output + loss, fwd+bwd): vqfast (Triton on CUDA; the reference autograd node
on CPU) against every eager path a user could write -- taming's two-MSE graph, the reference autograd node --
and torch.compile of the fastest; the strongest is named. Memory-bound: reads z and gathered codes, writes
z_q and dz. Outputs and both gradients are checked after timing."""
import pytest
import torch

import vqfast.ops as ops
from benchutil import CUDA, DEVICE, H100, Baseline, compare, shapes

SHAPES = shapes(target=[(3072, 1024, 256), (65536, 16384, 256)], extra=[], cpu=[(3072, 1024, 256)],
                quick=[(512, 128, 64)])


def sid(s):
    return "N{}-K{}-D{}".format(*s)


def taming(z, cb, idx):
    q = cb[idx]
    loss = torch.mean((q.detach() - z) ** 2) + 0.25 * torch.mean((q - z.detach()) ** 2)
    return z + (q - z).detach(), loss


def reference(z, cb, idx):
    return ops.reference.vq_straight_through(z, cb, idx, c_commit=1.0, c_book=0.25)


def step(fn, z, cb, idx, g):
    z_q, loss = fn(z, cb, idx)
    return (z_q, loss, *torch.autograd.grad((z_q * g).sum() + loss, (z, cb)))


def step_taming(z, cb, idx, g):
    return step(taming, z, cb, idx, g)


def step_reference(z, cb, idx, g):
    return step(reference, z, cb, idx, g)


def inputs(N, K, D):
    z = torch.randn(N, D, device=DEVICE, requires_grad=True)
    cb = torch.randn(K, D, device=DEVICE, requires_grad=True)
    return z, cb, torch.randint(0, K, (N,), device=DEVICE), torch.randn(N, D, device=DEVICE)


def nbytes(N, K, D):
    return 6 * N * D * 4 + 2 * K * D * 4


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
def test_vq_straight_through(benchmark, shape):
    z, cb, idx, g = inputs(*shape)
    fast = lambda a, b, i: ops.vq_straight_through(a, b, i, c_commit=1.0, c_book=0.25)  # noqa: E731
    expect = step_taming(z, cb, idx, g)

    def check(name, run, _args):
        for got, want in zip(run(), expect, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=name)

    base = {"taming_eager": Baseline(step_taming, (z, cb, idx, g)),
            "torch_reference": Baseline(step_reference, (z, cb, idx, g), compile=False)}  # custom autograd.Function
    compare(benchmark, "vq_st_fwdbwd", sid(shape), "triton" if CUDA else "torch_reference",
            lambda: step(fast, z, cb, idx, g), base, check=check, primary=shape == SHAPES[0], nbytes=nbytes(*shape),
            bound_s=nbytes(*shape) / H100["hbm"])
