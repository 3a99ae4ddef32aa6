"""ema_update_: Triton (atomic and deterministic) vs the one-hot eager path taming/lucidrains run and
the bincount + index_add_ reference. Reports GB/s against the minimal traffic and % of H100 HBM."""
import pytest
import torch
import torch.nn.functional as F

import vqfast.ops as ops
from benchutil import CUDA, DEVICE, H100, QUICK, fits, needs_cuda, run
from vqfast.ops import reference as ref

if CUDA:
    SHAPES = [(3072, 1024, 256), (65536, 16384, 256), (262144, 65536, 32)]
elif QUICK:
    SHAPES = [(512, 256, 64)]
else:
    SHAPES = [(3072, 1024, 256), (16384, 4096, 64)]


def sid(s):
    return "N{}-K{}-D{}".format(*s)


def state(N, K, D):
    g = torch.Generator(device=DEVICE).manual_seed(0)
    z = torch.randn(N, D, device=DEVICE, generator=g)
    idx = torch.randint(0, K, (N,), device=DEVICE, generator=g)
    cs = torch.rand(K, device=DEVICE, generator=g)
    ea = torch.randn(K, D, device=DEVICE, generator=g)
    w = torch.randn(K, D, device=DEVICE, generator=g)
    return z, idx, cs, ea, w


def onehot_eager(cs, ea, w, z, idx, decay=0.99, eps=1e-5):
    """taming EmbeddingEMA: N x K one-hot, sums by GEMM, in-place EMA, smoothing, divide."""
    K = w.shape[0]
    onehot = F.one_hot(idx, K).type(z.dtype)                          # (N, K)
    cs.mul_(decay).add_(onehot.sum(0), alpha=1 - decay)
    ea.mul_(decay).add_(onehot.t() @ z, alpha=1 - decay)
    n = cs.sum()
    w.copy_(ea / ((cs + eps) / (n + K * eps) * n).unsqueeze(1))


def min_bytes(N, K, D, itemsize=4):
    return N * D * itemsize + 8 * N + 3 * K * D * 4 + 8 * K


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("provider", ["onehot_eager", "torch_index_add"])
def test_ema_update_reference_paths(benchmark, shape, provider):
    N, K, D = shape
    z, idx, cs, ea, w = state(N, K, D)
    if provider == "onehot_eager":
        fn = lambda: onehot_eager(cs, ea, w, z, idx)  # noqa: E731
    else:
        fn = lambda: ref.ema_update_(cs, ea, w, z, idx, decay=0.99, eps=1e-5, check_values=False)  # noqa: E731
    if not fits(fn):
        pytest.skip(f"{provider} runs out of device memory at {sid(shape)}")
    run(benchmark, "ema_update_", sid(shape), provider, fn, nbytes=min_bytes(N, K, D),
        bound_s=min_bytes(N, K, D) / H100["hbm"])


@needs_cuda
@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
def test_ema_update_triton(benchmark, shape, deterministic):
    N, K, D = shape
    z, idx, cs, ea, w = state(N, K, D)
    fn = lambda: ops.ema_update_(cs, ea, w, z, idx, decay=0.99, eps=1e-5, backend="triton",  # noqa: E731
                                 deterministic=deterministic, check_values=False)
    z2, idx2, cs2, ea2, w2 = state(N, K, D)
    onehot_fits = N * K * 4 * 2 < torch.cuda.get_device_properties(0).total_memory * 0.6
    ref_fn = ((lambda: onehot_eager(cs2, ea2, w2, z2, idx2)) if onehot_fits else
              (lambda: ref.ema_update_(cs2, ea2, w2, z2, idx2, decay=0.99, eps=1e-5, check_values=False)))
    run(benchmark, "ema_update_", sid(shape), "triton_" + ("det" if deterministic else "atomic"), fn,
        ref_fn=ref_fn, nbytes=min_bytes(N, K, D), bound_s=min_bytes(N, K, D) / H100["hbm"],
        note="ref=onehot_eager" if onehot_fits else "ref=torch_index_add (one-hot OOM)")
    # one step from the same state must match the reference
    a = state(N, K, D)[2:]
    b = [t.clone() for t in a]
    ops.ema_update_(*a, z, idx, decay=0.99, eps=1e-5, backend="triton", deterministic=deterministic)
    ref.ema_update_(*b, z, idx, decay=0.99, eps=1e-5)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
