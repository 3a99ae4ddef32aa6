"""nearest_code: vqfast (Triton ieee / tf32 / bf16 on CUDA; the torch reference on CPU) against every eager
path a user could write for the same codes, at the same precision -- taming's fp32 composite, addmm + argmin,
torch.cdist + argmin, the chunked reference -- and torch.compile of the fastest of them; the strongest is
named in extra_info. Target (issue 13): >= 3x the strongest eager path and >= 50 % of the tensor-core bound
at (65536, 16384, 256); (262144, 65536, 32) runs. A D sweep at fixed N*K exposes the argmin-epilogue regime.
Every output is checked against the fp64 distances after timing (within the precision's error bound)."""
import pytest
import torch

import vqfast.ops as ops
from benchutil import CUDA, DEVICE, H100, Baseline, compare, shapes
from vqfast.ops import nearest_code_tolerance
from vqfast.ops import reference as ref

SHAPES = shapes(target=[(65536, 16384, 256), (262144, 65536, 32), (3072, 1024, 256)],
                extra=[(65536, 4096, d) for d in (4, 8, 16, 32, 64, 128, 256)],
                cpu=[(3072, 1024, 256), (8192, 1024, 32)], quick=[(512, 256, 64)])
MODES = [("ieee", torch.float32), ("tf32", torch.float32), ("bf16", torch.float32), ("bf16", torch.bfloat16)]


def sid(s):
    return "N{}-K{}-D{}".format(*s)


def inputs(N, K, D, dtype=torch.float32):
    g = torch.Generator(device=DEVICE).manual_seed(0)
    z = torch.randn(N, D, device=DEVICE, generator=g, dtype=torch.float32).to(dtype)
    cb = torch.randn(K, D, device=DEVICE, generator=g, dtype=torch.float32).to(dtype)
    return z, cb


class matmul_precision:
    """torch.backends.cuda.matmul.allow_tf32 for one eager baseline (tf32 mode compares against TF32 GEMMs)."""

    def __init__(self, tf32: bool):
        self.tf32 = tf32

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.tf32

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.saved


def taming_eager(z, cb):
    """taming VectorQuantizer2: full N x K distance matrix via einsum, then argmin (fp32 'highest')."""
    d = (z ** 2).sum(1, keepdim=True) + (cb ** 2).sum(1) - 2 * torch.einsum("bd,dn->bn", z, cb.t())
    return d.argmin(1)


def addmm_argmin(z, cb):
    """One GEMM with ||E||^2 fused as the bias (||z||^2 does not change the argmin), then argmin."""
    esq = (cb.float() ** 2).sum(1)
    if z.dtype == torch.float32:
        return torch.addmm(esq[None, :], z, cb.t(), alpha=-2.0).argmin(1)
    return (esq[None, :] - 2.0 * (z @ cb.t()).float()).argmin(1)      # bf16 GEMM, fp32 epilogue


def cdist_argmin(z, cb):
    return torch.cdist(z, cb).argmin(1)


def chunked_reference(z, cb, precision):
    return ref.nearest_code(z, cb, precision=precision, check_values=False)[0]


def baselines(z, cb, precision):
    """The eager paths at the precision the kernel runs at: bf16 mode gets bf16 GEMM inputs, tf32 TF32."""
    lo = z.bfloat16() if precision == "bf16" else z
    lcb = cb.bfloat16() if precision == "bf16" else cb
    tf32 = precision == "tf32"

    def with_precision(f, *args):
        def run(*a):
            with matmul_precision(tf32):
                return f(*a)
        return Baseline(run, args, note=f.__name__)

    zf, cbf = z.float(), cb.float()
    return {"taming_eager_fp32": Baseline(taming_eager, (zf, cbf)),
            "addmm_argmin": with_precision(addmm_argmin, lo, lcb),
            "cdist_argmin": with_precision(cdist_argmin, lo, lcb),
            "torch_chunked": Baseline(chunked_reference, (z, cb, precision), compile=False)}


def checker(z, cb, precision):
    sub = slice(0, min(4096, z.shape[0]))
    d = torch.cdist(z[sub].double(), cb.double()).square()              # (n, K) fp64 distances
    best = d.min(1).values
    tol = nearest_code_tolerance(z[sub], cb, precision).double() + 1e-9

    def check(name, run, _args):
        # one bound for every path: taming's fp32 composite is within the ieee bound, which is the smallest
        idx = run()
        idx = idx[0] if isinstance(idx, tuple) else idx
        gap = d.gather(1, idx[sub, None].long()).squeeze(1) - best
        assert (gap <= tol).all(), f"{name}: codes off by more than the {precision} bound"
    return check


def bound_s(N, K, D, precision, itemsize):
    tc = {"ieee": H100["fp32_simt"], "tf32": H100["tf32"], "bf16": H100["bf16"]}[precision]
    return max(2 * N * K * D / tc, N * K / H100["cuda_core_ops"], (N + K) * D * itemsize / H100["hbm"])


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("precision,dtype", MODES, ids=["ieee-fp32", "tf32-fp32", "bf16-fp32", "bf16-bf16"])
def test_nearest_code(benchmark, shape, precision, dtype):
    if not CUDA and (precision, dtype) != ("ieee", torch.float32):
        pytest.skip("CPU: the torch reference in ieee mode only (tensor-core modes are a GPU measurement)")
    N, K, D = shape
    z, cb = inputs(N, K, D, dtype)
    fn = lambda: ops.nearest_code(z, cb, precision=precision, check_values=False)  # noqa: E731
    provider = ("triton" if CUDA else "torch_reference") + f"_{precision}_{str(dtype)[6:]}"
    compare(benchmark, "nearest_code", sid(shape), provider, fn, baselines(z, cb, precision),
            check=checker(z, cb, precision), primary=shape == SHAPES[0], flops=2 * N * K * D,
            bound_s=bound_s(N, K, D, precision, z.element_size()))
