"""nearest_code: Triton (ieee / tf32 / bf16) vs taming's eager composite, the chunked reference and
torch.compile of the eager composite. Shapes from issue 2; a D sweep at fixed N*K exposes the
argmin-epilogue regime. Each fast entry checks its chosen codes against the fp32 reference afterwards."""
import pytest
import torch

import vqfast.ops as ops
from benchutil import CUDA, DEVICE, H100, QUICK, fits, needs_cuda, run
from vqfast.ops import nearest_code_tolerance
from vqfast.ops import reference as ref

if CUDA:
    SHAPES = [(3072, 1024, 256), (65536, 16384, 256), (262144, 65536, 32)]
    SHAPES += [(65536, 4096, d) for d in (4, 8, 16, 32, 64, 128, 256)]   # D sweep at fixed N*K
elif QUICK:
    SHAPES = [(512, 256, 64)]
else:
    SHAPES = [(3072, 1024, 256), (8192, 1024, 32)]


def sid(s):
    return "N{}-K{}-D{}".format(*s)


def inputs(N, K, D, dtype=torch.float32):
    g = torch.Generator(device=DEVICE).manual_seed(0)
    z = torch.randn(N, D, device=DEVICE, generator=g, dtype=torch.float32).to(dtype)
    cb = torch.randn(K, D, device=DEVICE, generator=g, dtype=torch.float32).to(dtype)
    return z, cb


def taming_eager(z, cb):
    """taming VectorQuantizer2: full N x K distance matrix via einsum, then argmin."""
    d = (z ** 2).sum(1, keepdim=True) + (cb ** 2).sum(1) - 2 * torch.einsum("bd,dn->bn", z, cb.t())
    return d.argmin(1)


def bound_s(N, K, D, precision, itemsize):
    tc = {"ieee": H100["fp32_simt"], "tf32": H100["tf32"], "bf16": H100["bf16"]}[precision]
    return max(2 * N * K * D / tc, N * K / H100["cuda_core_ops"], (N + K) * D * itemsize / H100["hbm"])


def check(z, cb, idx, precision):
    sub = slice(0, min(4096, z.shape[0]))
    r_idx, _ = ref.nearest_code(z[sub].float(), cb.float())
    d = torch.cdist(z[sub].double(), cb.double()).square()
    gap = d.gather(1, idx[sub, None]).squeeze(1) - d.gather(1, r_idx[:, None]).squeeze(1)
    assert (gap <= nearest_code_tolerance(z[sub], cb, precision).double() + 1e-9).all()


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("provider", ["taming_eager", "torch_chunked", "torch_compile"])
def test_nearest_code_reference_paths(benchmark, shape, provider):
    N, K, D = shape
    if provider == "torch_compile" and not CUDA:
        pytest.skip("torch.compile baseline is measured on CUDA only")
    z, cb = inputs(N, K, D)
    if provider == "taming_eager":
        fn = lambda: taming_eager(z, cb)  # noqa: E731
    elif provider == "torch_chunked":
        fn = lambda: ref.nearest_code(z, cb, check_values=False)[0]  # noqa: E731
    else:
        compiled = torch.compile(taming_eager)
        fn = lambda: compiled(z, cb)  # noqa: E731
    if not fits(fn):
        pytest.skip(f"{provider} runs out of device memory at {sid(shape)} (N x K = {N * K * 4 / 2**30:.1f} GiB fp32)")
    run(benchmark, "nearest_code", sid(shape), provider, fn, flops=2 * N * K * D,
        bound_s=bound_s(N, K, D, "ieee", 4))
    idx = fn()
    check(z, cb, idx, "ieee")


@needs_cuda
@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("precision,dtype", [("ieee", torch.float32), ("tf32", torch.float32),
                                             ("bf16", torch.float32), ("bf16", torch.bfloat16)],
                         ids=["ieee-fp32", "tf32-fp32", "bf16-fp32", "bf16-bf16"])
def test_nearest_code_triton(benchmark, shape, precision, dtype):
    N, K, D = shape
    z, cb = inputs(N, K, D, dtype)
    fn = lambda: ops.nearest_code(z, cb, backend="triton", precision=precision, check_values=False)  # noqa: E731
    zf, cbf = z.float(), cb.float()
    # the best eager path that fits: taming's composite when N x K fits, else the chunked reference
    eager_fits = N * K * 4 * 3 < torch.cuda.get_device_properties(0).total_memory * 0.6
    ref_fn = (lambda: taming_eager(zf, cbf)) if eager_fits else (lambda: ref.nearest_code(zf, cbf, check_values=False))
    run(benchmark, "nearest_code", sid(shape), f"triton_{precision}_{str(dtype)[6:]}", fn, ref_fn=ref_fn,
        flops=2 * N * K * D, bound_s=bound_s(N, K, D, precision, z.element_size()),
        note="ref=taming_eager" if eager_fits else "ref=torch_chunked (eager OOM)")
    idx, _ = fn()
    check(z, cb, idx, precision)
