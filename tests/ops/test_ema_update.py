"""ema_update_: kernel (both modes) and reference against a literal one-hot transcription of taming's EMA."""
import pytest
import torch

import vqfast.ops as ops
from helpers import BACKENDS, device, gpu
from vqfast.errors import InputError
from vqfast.ops import reference as ref
from vqfast.ops.ema_update import split_stats, stats_layout


def taming_literal(cluster_size, embed_avg, weight, z, idx, decay, eps):
    """taming EmbeddingEMA as written (one-hot, fp64): cluster_size/embed_avg EMA, Laplace smoothing."""
    K = weight.shape[0]
    onehot = torch.nn.functional.one_hot(idx, K).double()             # (N, K)
    c = cluster_size.double() * decay + onehot.sum(0) * (1 - decay)
    a = embed_avg.double() * decay + (onehot.t() @ z.double()) * (1 - decay)
    n = c.sum()
    smoothed = (c + eps) / (n + K * eps) * n
    return c, a, a / smoothed[:, None]


def state(K, D, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    cs = torch.rand(K, generator=g) * 5
    ea = torch.randn(K, D, generator=g)
    w = torch.randn(K, D, generator=g).to(dtype)
    return [t.to(device()) for t in (cs, ea, w)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("N,K,D", [(1, 1, 1), (7, 5, 3), (1000, 37, 20), (1823, 7, 33), (50, 300, 130)])
def test_parity_with_taming_semantics(backend, deterministic, N, K, D):
    g = torch.Generator().manual_seed(N * 7 + K)
    z = (torch.randn(N, D, generator=g) + 2.0).to(device())
    idx = torch.randint(0, K, (N,), generator=g).to(device())
    cs, ea, w = state(K, D, 0)
    c_ref, a_ref, w_ref = taming_literal(cs, ea, w, z, idx, 0.99, 1e-5)
    ops.ema_update_(cs, ea, w, z, idx, decay=0.99, eps=1e-5, backend=backend, deterministic=deterministic)
    torch.testing.assert_close(cs.double(), c_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ea.double(), a_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.double(), w_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_steps_and_bf16_inputs(backend):
    K, D = 23, 12
    cs, ea, w = state(K, D, 1, dtype=torch.bfloat16)
    cs2, ea2, w2 = cs.clone(), ea.clone(), w.float().clone()
    for step in range(4):
        g = torch.Generator().manual_seed(step)
        z = torch.randn(300, D, generator=g).to(device())
        idx, _ = ops.nearest_code(z, w2)
        ops.ema_update_(cs, ea, w, z.bfloat16(), idx, decay=0.9, eps=1e-5, backend=backend)
        ref.ema_update_(cs2, ea2, w2, z.bfloat16().float(), idx, decay=0.9, eps=1e-5)
        assert w.dtype == torch.bfloat16
        torch.testing.assert_close(cs, cs2, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ea, ea2, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(w.float(), w2.bfloat16().float(), atol=2e-2, rtol=2e-2)
        w2.copy_(w.float())  # keep both on the same (rounded) codebook


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic_mode_is_bitwise_reproducible(backend):
    K, D, N = 11, 40, 999
    z = (torch.randn(N, D) * 100).to(device())
    idx = torch.randint(0, 3, (N,)).to(device())                      # heavy contention on 3 codes
    outs = []
    for _ in range(2):
        cs, ea, w = state(K, D, 2)
        ops.ema_update_(cs, ea, w, z, idx, decay=0.99, eps=1e-5, backend=backend, deterministic=True)
        outs.append((cs, ea, w))
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("D", [6, 16, 33])
def test_reduce_hook_sees_one_buffer_and_acts_like_an_all_reduce(backend, deterministic, D):
    K, N = 9, 40
    z = torch.randn(N, D).to(device())
    idx = torch.randint(0, K, (N,)).to(device())
    seen = []
    Dp = (D + 15) // 16 * 16

    def hook(stats):   # two identical "ranks"
        sums, counts = split_stats(stats, K, D)
        seen.append((stats.shape, stats.dtype, stats.is_contiguous(), counts.sum().item(),
                     sums[:, D:].abs().sum().item(), sums.data_ptr() % 64, counts.data_ptr() % 64))
        ref_sums = torch.zeros(K, D).index_add_(0, idx.cpu(), z.cpu())
        torch.testing.assert_close(sums[:, :D].cpu(), ref_sums, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(counts.cpu(), torch.bincount(idx.cpu(), minlength=K).float())
        stats.mul_(2)

    cs, ea, w = state(K, D, 3)
    ops.ema_update_(cs, ea, w, z, idx, decay=0.95, eps=1e-5, backend=backend, reduce_hook=hook,
                    deterministic=deterministic)
    assert seen == [((K * Dp + K,), torch.float32, True, float(N), 0.0, 0, 0)]
    assert stats_layout(K, D) == (Dp, K * Dp + K)
    cs2, ea2, w2 = state(K, D, 3)
    ref.ema_update_(cs2, ea2, w2, torch.cat([z, z]), torch.cat([idx, idx]), decay=0.95, eps=1e-5)
    torch.testing.assert_close((cs, ea, w), (cs2, ea2, w2), atol=1e-5, rtol=1e-5)


def test_split_stats_rejects_a_wrong_buffer():
    with pytest.raises(InputError, match="flat buffer of 34 entries"):
        split_stats(torch.zeros(4, 9), 2, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("K", [1, 300, 1023, 5000])
def test_total_reduction_over_many_programs(backend, K):
    """n = sum of the updated counts is reduced by several programs (chunks of 256 under the interpreter)."""
    D, N = 4, 700
    g = torch.Generator().manual_seed(K)
    z = torch.randn(N, D, generator=g).to(device())
    idx = torch.randint(0, K, (N,), generator=g).to(device())
    cs, ea, w = state(K, D, 4)
    c_ref, a_ref, w_ref = taming_literal(cs, ea, w, z, idx, 0.9, 1e-5)
    ops.ema_update_(cs, ea, w, z, idx, decay=0.9, eps=1e-5, backend=backend)
    torch.testing.assert_close(cs.double(), c_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.double(), w_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fn", [ops.ema_update_, ref.ema_update_])
def test_bad_inputs_raise_naming_the_argument(fn):
    cs, ea, w = torch.zeros(4), torch.zeros(4, 3), torch.zeros(4, 3)
    z, idx = torch.randn(5, 3), torch.randint(0, 4, (5,))
    kw = dict(decay=0.99, eps=1e-5)
    with pytest.raises(InputError, match="cluster_size has dtype float64"):
        fn(cs.double(), ea, w, z, idx, **kw)
    with pytest.raises(InputError, match="weight has shape"):
        fn(cs, ea, w[:3], z, idx, **kw)
    with pytest.raises(InputError, match="z has D=2"):
        fn(cs, ea, w, z[:, :2], idx, **kw)
    with pytest.raises(InputError, match="idx has 4 entries"):
        fn(cs, ea, w, z, idx[:4], **kw)
    with pytest.raises(InputError, match="idx has dtype float32"):
        fn(cs, ea, w, z, idx.float(), **kw)
    with pytest.raises(InputError, match=r"allowed range is \[0, 3\]"):
        fn(cs, ea, w, z, idx + 4, **kw)
    with pytest.raises(InputError, match="z holds"):
        fn(cs, ea, w, z / 0, idx, **kw)
    with pytest.raises(InputError, match="decay=1.5"):
        fn(cs, ea, w, z, idx, decay=1.5, eps=1e-5)
    with pytest.raises(InputError, match="no rows"):
        fn(cs, ea, w, z[:0], idx[:0], **kw)
    with pytest.raises(InputError, match="codebook is empty"):
        fn(cs[:0], ea[:0], w[:0], z, idx, **kw)


@gpu
def test_gpu_production_shape():
    N, K, D = 65536, 16384, 256
    z = torch.randn(N, D, device="cuda")
    idx = torch.randint(0, K, (N,), device="cuda")
    a = state(K, D, 0)
    b = [t.clone() for t in a]
    ops.ema_update_(*a, z, idx, decay=0.99, eps=1e-5, backend="triton")
    ref.ema_update_(*b, z, idx, decay=0.99, eps=1e-5)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
