"""channel_stats: forward and fused backward against fp64 autograd references."""
import pytest
import torch

import vqfast.ops as ops
from helpers import BACKENDS, assert_lowp_close, device, gpu
from vqfast.errors import InputError
from vqfast.ops import reference as ref

SHAPES = [(1, 1, 2), (2, 3, 7), (2, 4, 1000), (1, 2, 1823), (2, 3, 5, 7), (1, 2, 3, 4, 5), (3, 1, 1, 1, 2)]


def fp64_truth(x, eps, unbiased):
    x64 = x.detach().double().requires_grad_()
    dims = tuple(range(2, x.dim()))
    mean = x64.mean(dims)
    std = torch.sqrt(x64.var(dims, correction=1 if unbiased else 0) + eps)
    return x64, mean, std


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward_fp32(backend, unbiased, shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = (torch.randn(*shape, generator=g) * 2 + 0.7).to(device()).requires_grad_()
    gm = torch.randn(shape[:2], generator=g).to(device())
    gs = torch.randn(shape[:2], generator=g).to(device())
    mean, std = ops.channel_stats(x, unbiased=unbiased, backend=backend)
    assert mean.shape == shape[:2] and std.shape == shape[:2] and mean.dtype == x.dtype
    (dx,) = torch.autograd.grad((mean * gm).sum() + (std * gs).sum(), x)
    x64, m64, s64 = fp64_truth(x, 1e-5, unbiased)
    (dx64,) = torch.autograd.grad((m64 * gm.double()).sum() + (s64 * gs.double()).sum(), x64)
    torch.testing.assert_close(mean.double(), m64.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std.double(), s64.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx.double(), dx64, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("unbiased", [True, False])
def test_stable_at_mean_100_std_001(backend, unbiased):
    x = (torch.randn(2, 3, 40, 50) * 0.01 + 100.0).to(device())
    mean, std = ops.channel_stats(x, eps=0.0, unbiased=unbiased, backend=backend)
    _, m64, s64 = fp64_truth(x, 0.0, unbiased)
    torch.testing.assert_close(mean.double(), m64.detach(), atol=5e-5, rtol=0)  # a few fp32 ulps at 100
    torch.testing.assert_close(std.double(), s64.detach(), atol=0, rtol=1e-3)  # naive E[x^2]-E[x]^2 is off by 100%


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_by_flash_attention_rule(backend, dtype):
    x32 = torch.randn(2, 5, 33, 31).to(device()) * 3 + 1
    x = x32.to(dtype).requires_grad_()
    g = torch.randn(2, 5).to(device())
    mean, std = ops.channel_stats(x, backend=backend)
    (dx,) = torch.autograd.grad((mean.float() * g).sum() + (std.float() * g).sum(), x)
    assert mean.dtype == dtype and dx.dtype == dtype
    xr = x.detach().float().requires_grad_()                          # fp32 reference on the same values
    m32, s32 = ref.channel_stats(xr)
    (dx32,) = torch.autograd.grad((m32 * g).sum() + (s32 * g).sum(), xr)
    xl = x.detach().clone().requires_grad_()                          # torch's own low-precision result
    dims = (2, 3)
    ml = xl.mean(dims)
    sl = torch.sqrt(xl.var(dims) + 1e-5)
    (dxl,) = torch.autograd.grad((ml.float() * g).sum() + (sl.float() * g).sum(), xl)
    assert_lowp_close(mean, m32, ml, atol=1e-3, name="mean")
    assert_lowp_close(std, s32, sl, atol=1e-3, name="std")
    assert_lowp_close(dx, dx32, dxl, atol=1e-3, name="dx")


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_through_one_output_only(backend):
    x = torch.randn(2, 3, 17).to(device()).requires_grad_()
    for pick in (0, 1):
        out = ops.channel_stats(x, backend=backend)[pick]
        (dx,) = torch.autograd.grad(out.sum(), x)
        out_ref = ref.channel_stats(x)[pick]
        (dx_ref,) = torch.autograd.grad(out_ref.sum(), x)
        torch.testing.assert_close(dx, dx_ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_input(backend):
    x = torch.randn(2, 8, 5, 6).to(device()).to(memory_format=torch.channels_last).requires_grad_()
    mean, std = ops.channel_stats(x, backend=backend)
    m, s = ref.channel_stats(x)
    torch.testing.assert_close((mean, std), (m, s), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fn", [ops.channel_stats, ref.channel_stats])
def test_bad_inputs_raise_naming_the_argument(fn):
    with pytest.raises(InputError, match="x must have at least 3 dims"):
        fn(torch.randn(3, 4))
    with pytest.raises(InputError, match="x has dtype int64"):
        fn(torch.ones(2, 3, 4, dtype=torch.long))
    with pytest.raises(InputError, match="unbiased=True needs at least 2"):
        fn(torch.randn(2, 3, 1, 1))
    fn(torch.randn(2, 3, 1, 1), unbiased=False)  # biased is defined for one position
    with pytest.raises(InputError, match="x holds"):
        fn(torch.full((1, 1, 3), float("nan")))
    with pytest.raises(InputError, match="eps=-1"):
        fn(torch.randn(1, 1, 3), eps=-1)


@gpu
def test_gpu_production_shape():
    x = torch.randn(8, 256, 64, 64, device="cuda", requires_grad=True)
    mean, std = ops.channel_stats(x, backend="triton")
    m, s = ref.channel_stats(x)
    torch.testing.assert_close((mean, std), (m, s), atol=1e-5, rtol=1e-5)
