"""nearest_code: Triton kernel (CUDA or TRITON_INTERPRET) and reference against an fp64 ground truth."""
import sys

import pytest
import torch

import vqfast.ops as ops
from helpers import BACKENDS, device, gpu, triton_runnable
from vqfast.errors import BackendError, InputError
from vqfast.ops import nearest_code_tolerance
from vqfast.ops import reference as ref

SHAPES = [(1, 1, 1), (7, 5, 3), (1000, 37, 20), (1823, 7, 33), (64, 70, 64), (5, 1, 300)]


def truth(z, cb):
    d = torch.cdist(z.double(), cb.double()).square()                # (N, K) fp64
    return d.argmin(1), d


def separated(N, K, D, seed=0, dtype=torch.float32):
    """Codes far apart; each z a small perturbation of a known code."""
    g = torch.Generator().manual_seed(seed)
    cb = torch.randn(K, D, generator=g) * 3 + 0.5                    # non-zero mean
    true = torch.randint(0, K, (N,), generator=g)
    z = cb[true] + 0.01 * torch.randn(N, D, generator=g)
    return z.to(dtype).to(device()), cb.to(dtype).to(device()), true.to(device())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N,K,D", SHAPES)
def test_ieee_exact_on_separated_data(backend, N, K, D):
    if D < 3 and K > 1:
        pytest.skip("too few dims to separate codes")
    z, cb, _ = separated(N, K, D)
    t_idx, t_d = truth(z, cb)
    idx, dist = ops.nearest_code(z, cb, backend=backend, precision="ieee")
    assert idx.dtype == torch.int64 and dist.dtype == torch.float32
    assert idx.shape == (N,) and dist.shape == (N,)
    torch.testing.assert_close(idx, t_idx)
    r_idx, r_dist = ref.nearest_code(z, cb)
    torch.testing.assert_close(idx, r_idx)
    torch.testing.assert_close(dist.double(), t_d.gather(1, t_idx[:, None]).squeeze(1), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(dist, r_dist, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("precision", ["ieee", "tf32", "bf16"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("N,K,D", [(1, 1, 1), (7, 5, 3), (333, 70, 48), (100, 200, 7)])
def test_chosen_code_within_documented_tolerance(backend, precision, dtype, N, K, D):
    g = torch.Generator().manual_seed(N + K + D)
    z = (torch.randn(N, D, generator=g) + 0.3).to(dtype).to(device())  # random data: many near-ties
    cb = torch.randn(K, D, generator=g).to(dtype).to(device())
    idx, dist = ops.nearest_code(z, cb, backend=backend, precision=precision)
    _, d = truth(z, cb)
    chosen = d.gather(1, idx[:, None]).squeeze(1)
    gap = chosen - d.min(1).values
    bound = nearest_code_tolerance(z, cb, precision).double()
    if backend == "triton" and device() == "cpu" and precision == "bf16" and dtype == torch.float32:
        bound = bound * 2  # the CPU interpreter truncates fp32 -> bf16 instead of rounding to nearest
    assert (gap <= bound).all(), f"max gap {gap.max().item()} vs bound {bound.max().item()}"
    assert torch.isfinite(dist).all() and (dist >= 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_pick_lowest_index(backend):
    cb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]] * 8, device=device())
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [3.0, 3.0]], device=device())
    idx, _ = ops.nearest_code(z, cb, backend=backend)
    assert idx.tolist() == [0, 1, 0, 0]
    # duplicates beyond the first K-tile must not win
    cb2 = torch.cat([torch.randn(37, 2, device=device()) + 10, cb], 0)
    idx2, _ = ops.nearest_code(z, cb2, backend=backend)
    assert idx2.tolist() == [37, 38, 37, 37]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [1e15, 1e-20])
def test_huge_and_tiny_magnitudes_no_nan(backend, scale):
    g = torch.Generator().manual_seed(1)
    cb = (torch.randn(19, 9, generator=g) * scale).to(device())
    z = torch.cat([cb[[3, 7]], (torch.randn(5, 9, generator=g) * scale).to(device())])
    idx, dist = ops.nearest_code(z, cb, backend=backend)
    assert torch.isfinite(dist).all() and (dist >= 0).all()
    assert idx[:2].tolist() == [3, 7] or scale < 1e-10  # tiny: squares underflow, every code is "equal"


@pytest.mark.parametrize("backend", BACKENDS)
def test_precomputed_codebook_sqnorm(backend):
    z, cb, true = separated(257, 33, 17)
    sq = cb.float().square().sum(1)
    idx, dist = ops.nearest_code(z, cb, backend=backend, codebook_sqnorm=sq)
    idx2, dist2 = ops.nearest_code(z, cb, backend=backend)
    torch.testing.assert_close(idx, true)
    torch.testing.assert_close(idx, idx2)
    torch.testing.assert_close(dist, dist2, atol=1e-4, rtol=1e-4)


def test_reference_is_chunked(monkeypatch):
    mod = sys.modules["vqfast.ops.nearest_code"]

    z, cb, true = separated(301, 29, 12)
    monkeypatch.setattr(mod, "_REFERENCE_CHUNK_ELEMENTS", 29 * 7)   # 7 rows per chunk, ragged tail
    idx, dist = ref.nearest_code(z, cb)
    torch.testing.assert_close(idx, true)
    monkeypatch.setattr(mod, "_REFERENCE_CHUNK_ELEMENTS", 1)         # one row per chunk
    idx1, dist1 = ref.nearest_code(z, cb)
    torch.testing.assert_close(idx1, idx)
    torch.testing.assert_close(dist1, dist, atol=2e-4, rtol=1e-4)  # matmul blocking changes rounding


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_dtypes_and_strided_inputs(backend):
    z, cb, true = separated(100, 20, 16)
    zt = torch.randn(16, 100, device=device()).t()                    # non-contiguous rows
    zt.copy_(z)
    idx, _ = ops.nearest_code(zt.bfloat16(), cb, backend=backend)     # bf16 z, fp32 codebook
    torch.testing.assert_close(idx, true)
    idx2, _ = ops.nearest_code(z[::2], cb, backend=backend)           # row stride 2
    torch.testing.assert_close(idx2, true[::2])


def test_empty_z_gives_empty_outputs():
    idx, dist = ops.nearest_code(torch.empty(0, 4), torch.randn(3, 4))
    assert idx.shape == (0,) and dist.shape == (0,)


@pytest.mark.parametrize("fn", [ops.nearest_code, ref.nearest_code])
def test_bad_inputs_raise_naming_the_argument(fn):
    z, cb = torch.randn(5, 4), torch.randn(3, 4)
    with pytest.raises(InputError, match="z must have 2 dims"):
        fn(z[None], cb)
    with pytest.raises(InputError, match="codebook must have 2 dims"):
        fn(z, cb[0])
    with pytest.raises(InputError, match="z has dtype int64"):
        fn(z.long(), cb)
    with pytest.raises(InputError, match="D=4 but codebook has D=5"):
        fn(z, torch.randn(3, 5))
    with pytest.raises(InputError, match="codebook is empty"):
        fn(z, torch.randn(0, 4))
    with pytest.raises(InputError, match="z holds 1 non-finite"):
        fn(torch.cat([z, torch.tensor([[float("nan"), 0, 0, 0]])]), cb)
    with pytest.raises(InputError, match="codebook holds"):
        fn(z, torch.full((3, 4), float("inf")))
    with pytest.raises(InputError, match="precision='fp8'"):
        fn(z, cb, precision="fp8")
    with pytest.raises(InputError, match="one device"):
        fn(z, cb.to("meta"), check_values=False)
    with pytest.raises(InputError, match="codebook_sqnorm has 2 entries"):
        fn(z, cb, codebook_sqnorm=torch.ones(2))


def test_dispatch_rule(monkeypatch):
    z, cb = torch.randn(5, 4), torch.randn(3, 4)
    with pytest.raises(BackendError, match="backend='cuda'"):
        ops.nearest_code(z, cb, backend="cuda")
    monkeypatch.setenv("VQFAST_BACKEND", "bogus")
    with pytest.raises(BackendError, match="VQFAST_BACKEND='bogus'"):
        ops.nearest_code(z, cb)
    monkeypatch.setenv("VQFAST_BACKEND", "torch")
    assert ops.resolve_backend("auto", z, op="x") == "torch"
    monkeypatch.delenv("VQFAST_BACKEND")
    assert ops.resolve_backend("auto", z, op="x") == "torch"         # CPU tensors -> reference
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendError, match="needs CUDA tensors"):
        ops.resolve_backend("triton", z, op="nearest_code")


@gpu
@pytest.mark.parametrize("precision", ["ieee", "tf32", "bf16"])
def test_gpu_production_shape_and_memory(precision):
    torch.manual_seed(0)
    N, K, D = 65536, 16384, 256
    z = torch.randn(N, D, device="cuda")
    cb = torch.randn(K, D, device="cuda")
    ops.nearest_code(z[:128], cb, backend="triton", precision=precision)  # autotune outside the measurement
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    idx, dist = ops.nearest_code(z, cb, backend="triton", precision=precision, check_values=False)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert extra <= 4 * N * 16 + (1 << 20), f"extra memory {extra} bytes is not O(N)"
    sub = slice(0, 4096)
    _, d = truth(z[sub], cb)
    gap = d.gather(1, idx[sub, None]).squeeze(1) - d.min(1).values
    assert (gap <= nearest_code_tolerance(z[sub], cb, precision).double()).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N,K,D", [(1, 1, 1), (1000, 37, 20), (64, 300, 130)])
def test_return_counts_is_the_assignment_histogram(backend, N, K, D):
    z, cb, true = separated(N, K, D)
    idx, dist, counts = ops.nearest_code(z, cb, backend=backend, return_counts=True)
    assert counts.dtype == torch.float32 and counts.shape == (K,)
    torch.testing.assert_close(counts, torch.bincount(idx, minlength=K).float())
    idx2, dist2 = ops.nearest_code(z, cb, backend=backend)
    torch.testing.assert_close(idx, idx2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_property_matches_brute_force_on_random_shapes(backend):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=15, deadline=None, derandomize=True)
    @given(N=st.integers(1, 70), K=st.integers(1, 40), D=st.integers(1, 40), seed=st.integers(0, 2**16),
           scale=st.sampled_from([1e-3, 1.0, 1e3]))
    def check(N, K, D, seed, scale):
        g = torch.Generator().manual_seed(seed)
        z = (torch.randn(N, D, generator=g) * scale).to(device())
        cb = (torch.randn(K, D, generator=g) * scale).to(device())
        idx, dist = ops.nearest_code(z, cb, backend=backend)
        _, d = truth(z, cb)
        gap = d.gather(1, idx[:, None]).squeeze(1) - d.min(1).values
        assert (gap <= nearest_code_tolerance(z, cb, "ieee").double()).all()
        assert (dist >= 0).all()

    check()


# ---- kernel structure: split codebook for small N, resident z, even-K, norms computed once -------------------

def _kernel_module():
    import vqfast.kernels.nearest_code as nc

    return nc


@pytest.mark.parametrize("N,K,D", [(1000, 100, 20), (7, 200, 256), (300, 48, 16), (40, 333, 200), (9, 70, 300)])
def test_split_and_unsplit_paths_agree_exactly(monkeypatch, N, K, D):
    """The packed 64-bit atomic-min merge returns the same (idx, dist, counts) as one program per row block."""
    if not triton_runnable():
        pytest.skip("needs Triton with CUDA or TRITON_INTERPRET=1")
    nc = _kernel_module()
    g = torch.Generator().manual_seed(N + K)
    z = (torch.randn(N, D, generator=g) + 0.5).to(device())
    cb = torch.randn(K, D, generator=g).to(device())
    outs = []
    for sms in (1, 10**6):                                            # never split / always split
        monkeypatch.setattr(nc, "_sm_count", lambda dev, s=sms: s)
        outs.append(ops.nearest_code(z, cb, backend="triton", precision="ieee", return_counts=True))
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)
    _, d = truth(z, cb)
    gap = d.gather(1, outs[1][0][:, None]).squeeze(1) - d.min(1).values
    assert (gap <= nearest_code_tolerance(z, cb, "ieee").double()).all()


def test_split_merge_ties_go_to_the_lowest_index_across_splits(monkeypatch):
    if not triton_runnable():
        pytest.skip("needs Triton with CUDA or TRITON_INTERPRET=1")
    nc = _kernel_module()
    monkeypatch.setattr(nc, "_sm_count", lambda dev: 10**6)
    g = torch.Generator().manual_seed(5)
    cb = torch.randn(200, 4, generator=g) * 5 + 20                   # far from the test points
    cb[150] = cb[7] = torch.tensor([1.0, 0.0, 0.0, 0.0])              # duplicates in different splits
    cb[190] = cb[60] = torch.tensor([0.0, 0.0, 0.0, 0.0])             # zero rows: distance exactly ||z||^2
    z = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0]])
    idx, dist = ops.nearest_code(z.to(device()), cb.to(device()), backend="triton")
    assert idx.tolist() == [7, 60, 60, 7]
    torch.testing.assert_close(dist.cpu(), torch.tensor([0.0, 0.0, 1.0, 0.02]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N,K,D", [(33, 48, 16), (257, 64, 256), (100, 32, 128), (65, 17, 257)])
def test_even_k_resident_and_chunked_shapes(backend, N, K, D):
    """EVEN_K / EVEN_D fast paths (K, D multiples of the tiles), resident z up to D = 256, chunks beyond."""
    z, cb, true = separated(N, K, D, seed=D)
    idx, dist = ops.nearest_code(z, cb, backend=backend)
    torch.testing.assert_close(idx, true)
    r_idx, r_dist = ref.nearest_code(z, cb)
    scale = z.float().square().sum(1).max().item()                    # expanded-form cancellation ~ ||z||^2 eps
    torch.testing.assert_close(dist, r_dist, atol=2e-6 * scale, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_row_sqnorm_and_one_time_bf16_cast(dtype):
    if not triton_runnable():
        pytest.skip("needs Triton with CUDA or TRITON_INTERPRET=1")
    nc = _kernel_module()
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(37, 300, generator=g) * 3 + 1).to(dtype).to(device())
    sq, cast = nc.row_sqnorm(x[:, :257], cast_bf16=dtype == torch.float32)   # strided rows, ragged D
    torch.testing.assert_close(sq, x[:, :257].float().square().sum(1), atol=1e-3, rtol=1e-5)
    if dtype == torch.float32:
        assert cast.dtype == torch.bfloat16 and cast.is_contiguous() and cast.shape == (37, 257)
        err = (cast.float() - x[:, :257]).abs()
        assert (err <= 2.0**-7 * x[:, :257].abs() + 1e-30).all()        # a bf16 rounding of each value
    else:
        assert cast is None


def test_bf16_mode_uses_fp32_norms_and_cast_inputs():
    """precision="bf16" on fp32 inputs == the bf16-input kernel on the rounded values, norms from fp32 values."""
    if not triton_runnable():
        pytest.skip("needs Triton with CUDA or TRITON_INTERPRET=1")
    nc = _kernel_module()
    z, cb, true = separated(300, 40, 24)
    idx, dist = ops.nearest_code(z, cb, backend="triton", precision="bf16")
    torch.testing.assert_close(idx, true)
    zb, _ = nc.row_sqnorm(z, cast_bf16=True)
    _, cbb = nc.row_sqnorm(cb, cast_bf16=True)
    _, zc = nc.row_sqnorm(z, cast_bf16=True)
    i2, d2 = ops.nearest_code(zc, cbb, backend="triton", codebook_sqnorm=cb.square().sum(1))
    torch.testing.assert_close(idx, i2)
    # same bf16 products, but ||z||^2 from the fp32 values instead of the rounded ones
    torch.testing.assert_close(dist - zb, d2 - zc.float().square().sum(1), atol=1e-3, rtol=1e-4)


def test_autotune_key_has_an_n_bucket():
    if not triton_runnable():
        pytest.skip("needs Triton with CUDA or TRITON_INTERPRET=1")
    nc = _kernel_module()
    assert "N_BUCKET" in nc._nearest_code_fwd_kernel.keys
    assert [nc._n_bucket(n) for n in (1, 4096, 4097, 32768, 65536)] == [0, 0, 1, 1, 2]
