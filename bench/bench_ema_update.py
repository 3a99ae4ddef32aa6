"""ema_update_: vqfast (Triton atomic / deterministic on CUDA; the torch reference on CPU) against every eager
path a user could write for one EMA codebook step -- taming's N x K one-hot matmul, bincount + index_add_,
index_add_ counts and sums (vqfast's reference) -- and torch.compile of the fastest; the strongest is named.
GB/s against the minimal traffic and % of H100 HBM. Target (issue 13): >= 50 % of HBM bandwidth and >= 10x
one-hot at (65536, 16384, 256). Every path's result is checked against the reference step afterwards."""
import pytest
import torch
import torch.nn.functional as F

import vqfast.ops as ops
from benchutil import CUDA, DEVICE, H100, Baseline, compare, shapes
from vqfast.ops import reference as ref

SHAPES = shapes(target=[(65536, 16384, 256), (3072, 1024, 256)], extra=[(262144, 65536, 32)],
                cpu=[(3072, 1024, 256), (16384, 4096, 64)], quick=[(512, 256, 64)])
DECAY, EPS = 0.99, 1e-5


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


def _finish(cs, ea, w, counts, sums):
    cs.mul_(DECAY).add_(counts, alpha=1 - DECAY)
    ea.mul_(DECAY).add_(sums, alpha=1 - DECAY)
    n = cs.sum()
    w.copy_(ea / ((cs + EPS) / (n + cs.shape[0] * EPS) * n).unsqueeze(1))


def onehot_eager(cs, ea, w, z, idx):
    """taming EmbeddingEMA: N x K one-hot, sums by GEMM, in-place EMA, smoothing, divide."""
    onehot = F.one_hot(idx, w.shape[0]).type(z.dtype)                 # (N, K)
    _finish(cs, ea, w, onehot.sum(0), onehot.t() @ z)


def bincount_index_add(cs, ea, w, z, idx):
    """What a user writes without the one-hot: bincount counts (a host sync on CUDA) + index_add_ sums."""
    counts = torch.bincount(idx, minlength=w.shape[0]).float()
    _finish(cs, ea, w, counts, torch.zeros_like(ea).index_add_(0, idx, z))


def index_add_eager(cs, ea, w, z, idx):
    """Sync-free eager: counts and sums both by index_add_."""
    counts = torch.zeros_like(cs).index_add_(0, idx, torch.ones_like(idx, dtype=cs.dtype))
    _finish(cs, ea, w, counts, torch.zeros_like(ea).index_add_(0, idx, z))


def min_bytes(N, K, D, itemsize=4):
    return N * D * itemsize + 8 * N + 3 * K * D * 4 + 8 * K


def _copy(tensors):
    return tuple(t.clone() for t in tensors)


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
def test_ema_update(benchmark, shape, deterministic):
    if not CUDA and deterministic:
        pytest.skip("CPU: the torch reference is deterministic already")
    N, K, D = shape
    z, idx, cs, ea, w = state(N, K, D)
    start = _copy((cs, ea, w))
    fn = lambda: ops.ema_update_(cs, ea, w, z, idx, decay=DECAY, eps=EPS,  # noqa: E731
                                 deterministic=deterministic, check_values=False)
    onehot_fits = N * K * 4 * 2 < (torch.cuda.get_device_properties(0).total_memory * 0.6 if CUDA else 2**31)
    paths = {"onehot_eager": onehot_eager, "bincount_index_add": bincount_index_add,
             "index_add_eager": index_add_eager}
    base = {}
    for name, f in paths.items():
        if name == "onehot_eager" and not onehot_fits:
            base[name] = f"N x K one-hot ({N * K * 8 / 2**30:.0f} GiB int64) does not fit"
        else:
            base[name] = Baseline(f, (*_copy(start), z, idx), compile=name != "bincount_index_add")
    expect = _copy(start)
    ref.ema_update_(*expect, z, idx, decay=DECAY, eps=EPS)

    def check(name, run, args):
        # one step from the benchmark's start state, by the same path, must equal the reference step
        state_ = (cs, ea, w) if args is None else args[:3]
        for t, s0 in zip(state_, start, strict=True):
            t.copy_(s0)
        run()
        torch.testing.assert_close(tuple(state_), expect, atol=1e-4, rtol=1e-4, msg=name)

    provider = "triton_" + ("det" if deterministic else "atomic") if CUDA else "torch_reference"
    compare(benchmark, "ema_update_", sid(shape), provider, fn, base, check=check, primary=shape == SHAPES[0], nbytes=min_bytes(N, K, D),
            bound_s=min_bytes(N, K, D) / H100["hbm"])
