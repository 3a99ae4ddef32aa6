"""channel_stats forward+backward: Triton (fused backward) vs the eager mean/var composite QuantArt runs,
torch.var_mean (the reference) and torch.compile of the composite. GB/s against x read twice + dx written."""
import pytest
import torch

import vqfast.ops as ops
from benchutil import CUDA, DEVICE, H100, QUICK, needs_cuda, run
from vqfast.ops import reference as ref

if CUDA:
    SHAPES = [(8, 256, 64, 64), (8, 512, 32, 32), (16, 256, 16, 16), (8, 64, 256, 256)]
elif QUICK:
    SHAPES = [(2, 32, 16, 16)]
else:
    SHAPES = [(8, 256, 64, 64)]


def sid(s):
    return "x".join(map(str, s))


def eager(x, eps=1e-5):
    """QuantArt calc_mean_std: var over flattened H*W (unbiased) + eps, sqrt; mean separately."""
    B, C = x.shape[:2]
    flat = x.view(B, C, -1)
    return flat.mean(dim=2), (flat.var(dim=2) + eps).sqrt()


def fwd_bwd(stats_fn, x, g):
    mean, std = stats_fn(x)
    torch.autograd.grad((mean * g).sum() + (std * g).sum(), x)


def nbytes(shape, itemsize=4):
    n = 1
    for s in shape:
        n *= s
    return 3 * n * itemsize


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("provider", ["torch_eager", "torch_var_mean", "torch_compile"])
def test_channel_stats_reference_paths(benchmark, shape, provider):
    if provider == "torch_compile" and not CUDA:
        pytest.skip("torch.compile baseline is measured on CUDA only")
    x = torch.randn(*shape, device=DEVICE, requires_grad=True)
    g = torch.randn(shape[:2], device=DEVICE)
    fn_stats = {"torch_eager": eager, "torch_var_mean": lambda t: ref.channel_stats(t, check_values=False),
                "torch_compile": torch.compile(eager) if provider == "torch_compile" else None}[provider]
    run(benchmark, "channel_stats", sid(shape), provider + "_fwdbwd", lambda: fwd_bwd(fn_stats, x, g),
        nbytes=nbytes(shape), bound_s=nbytes(shape) / H100["hbm"])


@needs_cuda
@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_channel_stats_triton(benchmark, shape, dtype):
    x = torch.randn(*shape, device=DEVICE).to(dtype).requires_grad_()
    g = torch.randn(shape[:2], device=DEVICE)
    fast = lambda t: ops.channel_stats(t, backend="triton", check_values=False)  # noqa: E731
    run(benchmark, "channel_stats", sid(shape), f"triton_fwdbwd_{str(dtype)[6:]}", lambda: fwd_bwd(fast, x, g),
        ref_fn=lambda: fwd_bwd(lambda t: ref.channel_stats(t, check_values=False), x, g),
        nbytes=nbytes(shape, x.element_size()), bound_s=nbytes(shape, x.element_size()) / H100["hbm"],
        note="ref=torch.var_mean")
    m, s = fast(x)
    m0, s0 = ref.channel_stats(x.detach().float())
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close((m.float(), s.float()), (m0, s0), atol=tol, rtol=tol)
