"""channel_stats forward+backward: vqfast (Triton fused backward on CUDA; the torch reference on CPU) against
every eager path a user could write for (mean, std) per (sample, channel) with their gradient -- QuantArt's
mean/var composite, torch.var_mean (vqfast's reference), torch.std_mean -- and torch.compile of the fastest;
the strongest is named. GB/s against x read twice + dx written. Target (issue 13): >= 1.5x PyTorch eager and
>= 1x torch.compile at (8, 256, 64, 64). Values and gradients are checked after timing."""
import pytest
import torch

import vqfast.ops as ops
from benchutil import CUDA, DEVICE, H100, Baseline, compare, shapes
from vqfast.ops import reference as ref

SHAPES = shapes(target=[(8, 256, 64, 64)], extra=[(8, 512, 32, 32), (16, 256, 16, 16), (8, 64, 256, 256)],
                cpu=[(8, 256, 64, 64)], quick=[(2, 32, 16, 16)])
EPS = 1e-5


def sid(s):
    return "x".join(map(str, s))


def quantart_eager(x):
    """QuantArt calc_mean_std: var over flattened H*W (unbiased) + eps, sqrt; mean separately."""
    B, C = x.shape[:2]
    flat = x.view(B, C, -1)
    return flat.mean(dim=2), (flat.var(dim=2) + EPS).sqrt()


def var_mean(x):
    var, mean = torch.var_mean(x, dim=(2, 3), correction=1)
    return mean, (var + EPS).sqrt()


def std_mean(x):
    """std_mean gives sqrt(var) without eps; sqrt(std^2 + eps) restores the same output."""
    std, mean = torch.std_mean(x, dim=(2, 3), correction=1)
    return mean, (std.square() + EPS).sqrt()


def fwd_bwd(stats_fn, x, g):
    mean, std = stats_fn(x)
    return (mean, std, *torch.autograd.grad((mean * g).sum() + (std * g).sum(), x))


def nbytes(shape, itemsize=4):
    n = 1
    for s in shape:
        n *= s
    return 3 * n * itemsize


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_channel_stats(benchmark, shape, dtype):
    if not CUDA and dtype != torch.float32:
        pytest.skip("CPU: fp32 only")
    x = torch.randn(*shape, device=DEVICE).to(dtype).requires_grad_()
    g = torch.randn(shape[:2], device=DEVICE)
    fast = lambda t: ops.channel_stats(t, eps=EPS, check_values=False)  # noqa: E731
    expect = fwd_bwd(lambda t: ref.channel_stats(t.float(), eps=EPS), x, g)
    tol = 1e-4 if dtype == torch.float32 else 3e-2

    def check(name, run, _args):
        got = run()
        torch.testing.assert_close(tuple(t.float() for t in got), tuple(t.float() for t in expect), atol=tol,
                                   rtol=tol, msg=name)

    # each path as the one function a user would write (and torch.compile): stats, then their gradient
    base = {n: Baseline(_bound(f), (x, g)) for n, f in
            (("quantart_eager", quantart_eager), ("torch_var_mean", var_mean), ("torch_std_mean", std_mean))}
    provider = ("triton" if CUDA else "torch_reference") + f"_fwdbwd_{str(dtype)[6:]}"
    compare(benchmark, "channel_stats", sid(shape), provider, lambda: fwd_bwd(fast, x, g), base, check=check, primary=shape == SHAPES[0],
            nbytes=nbytes(shape, x.element_size()), bound_s=nbytes(shape, x.element_size()) / H100["hbm"])


def _bound(stats_fn):
    def step(x, g):
        return fwd_bwd(stats_fn, x, g)
    step.__name__ = f"fwd_bwd_{stats_fn.__name__}"
    return step
