"""binary_entropy: the streamed LFQ/BSQ entropies against the (N, 2^d) table in fp64, and gradcheck."""
import pytest
import torch

from helpers import BACKENDS, triton_runnable
from vqfast.errors import InputError
from vqfast.ops import binary_entropy as be

SHAPES = [(1, 1), (7, 3), (37, 6), (1000, 7), (1823, 9)]
CASES = [("torch", N, d) for N, d in SHAPES] + [  # the interpreter is slow: the Triton cases stay small
    pytest.param("triton", N, d, marks=BACKENDS[1].marks, id=f"triton-{N}-{d}") for N, d in [(1, 1), (7, 3), (37, 6), (1000, 4), (100, 9)]]


@pytest.mark.parametrize("backend,N,d", CASES)
def test_streamed_entropies_match_fp64_table(backend, N, d, monkeypatch):
    monkeypatch.setattr(be, "_CHUNK_ELEMENTS", 256)                    # several chunks even at small N
    g = torch.Generator().manual_seed(N * 31 + d)
    L64 = (torch.randn(N, d, generator=g, dtype=torch.float64) * 3 + 0.5).requires_grad_()
    H_ref, A_ref = be.codebook_entropy_reference(L64)
    L32 = L64.detach().float().requires_grad_()
    H, A = be.codebook_entropy(L32, backend=backend)
    torch.testing.assert_close(H.double(), H_ref.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(A.double(), A_ref, atol=1e-6, rtol=1e-5)
    g_ref, = torch.autograd.grad(H_ref, L64)
    g32, = torch.autograd.grad(H, L32)
    torch.testing.assert_close(g32.double(), g_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(be.per_sample_entropy(L32).double(),
                               be.per_sample_entropy_reference(L64).detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("N,d", [(5, 1), (6, 4), (9, 5)])
def test_gradcheck_fp64(N, d, monkeypatch):
    monkeypatch.setattr(be, "_CHUNK_ELEMENTS", 8)
    L = torch.randn(N, d, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: be.codebook_entropy(t)[0], (L,))
    assert torch.autograd.gradcheck(be.per_sample_entropy, (L,))


def test_entropy_bounds_and_errors():
    L = torch.zeros(4, 5)                                              # uniform: H = 5 log 2 both ways
    H, A = be.codebook_entropy(L)
    torch.testing.assert_close(H, torch.tensor(5 * 0.6931471805599453))
    torch.testing.assert_close(be.per_sample_entropy(L), torch.tensor(5 * 0.6931471805599453))
    assert A.shape == (32,)
    if triton_runnable():
        with pytest.raises(InputError, match="float64"):
            be.codebook_entropy(L.double(), backend="triton")
    with pytest.raises(InputError):
        be.codebook_entropy(torch.zeros(0, 3))
    with pytest.raises(InputError):
        be.codebook_entropy(torch.zeros(2, 31))


def test_memory_is_linear_in_K_not_NK():
    """At d = 16 (K = 65,536) and N = 4,096 the table needs N K = 2^28 floats (1 GiB); the streamed op's
    saved tensors are L (N, d) and A (K,) only."""
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    L = torch.randn(4096, 16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        H, _ = be.codebook_entropy(L)
    H.backward()
    assert sum(saved) <= 4096 * 16 + 65536 + 16, saved
    assert torch.isfinite(L.grad).all()
