"""ibq_soft: streamed online-softmax straight-through against the eager SEED-Voken formula (fp64)."""
import pytest
import torch

from helpers import BACKENDS, device, triton_runnable
from vqfast.errors import InputError
from vqfast.ops import ibq_soft as ib


@pytest.mark.parametrize("N,K,D", [(1, 1, 3), (7, 5, 4), (37, 1000, 8), (1823, 7, 5)])
def test_matches_eager_formula_fp64(N, K, D, monkeypatch):
    monkeypatch.setattr(ib, "_TILE_ELEMENTS", 256)                     # several (rows x codes) tiles
    g = torch.Generator().manual_seed(N + K)
    z = torch.randn(N, D, generator=g, dtype=torch.float64, requires_grad=True)
    E = torch.randn(K, D, generator=g, dtype=torch.float64, requires_grad=True)
    idx = (z @ E.t()).argmax(1)
    go = torch.randn(N, D, generator=g, dtype=torch.float64)
    out = ib.ibq_soft(z, E, idx)
    gz, gE = torch.autograd.grad((out * go).sum(), (z, E))
    ref = ib.ibq_soft_reference(z, E, idx)
    rz, rE = torch.autograd.grad((ref * go).sum(), (z, E))
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(gz, rz)
    torch.testing.assert_close(gE, rE)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N,K,D", [(1, 1, 3), (7, 33, 5), (50, 70, 6), (37, 20, 40)])
def test_fp32_parity_against_fp64_reference(backend, N, K, D):
    """Both paths (the Triton kernels under TRITON_INTERPRET=1 on CPU) against the eager formula in fp64."""
    g = torch.Generator().manual_seed(N * 7 + K)
    z = torch.randn(N, D, generator=g)
    E = torch.randn(K, D, generator=g)
    go = torch.randn(N, D, generator=g)
    z, E, go = z.to(device()), E.to(device()), go.to(device())
    idx = (z @ E.t()).argmax(1)
    z32, E32 = z.clone().requires_grad_(), E.clone().requires_grad_()
    out = ib.ibq_soft(z32, E32, idx, backend=backend)
    a = torch.autograd.grad((out * go).sum(), (z32, E32))
    z64, E64 = z.double().requires_grad_(), E.double().requires_grad_()
    b = torch.autograd.grad((ib.ibq_soft_reference(z64, E64, idx) * go.double()).sum(), (z64, E64))
    assert torch.equal(out.detach(), E.index_select(0, idx))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.double(), y, atol=1e-4, rtol=1e-4)  # fp32 exp/summation vs fp64


def test_dispatch_limits():
    z, E = torch.randn(3, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    idx = (z @ E.t()).argmax(1)
    if triton_runnable():
        with pytest.raises(InputError, match="fp32 with D <= 128"):
            ib.ibq_soft(z, E, idx, backend="triton")
    with pytest.raises(InputError):
        ib.ibq_soft(z.float(), E, idx)                                 # mixed dtypes


@pytest.mark.parametrize("N,K,D", [(1, 1, 3), (7, 5, 4), (37, 100, 8), (1000, 7, 3)])
def test_entropy_loss_matches_seed_voken_and_gradcheck(N, K, D, monkeypatch):
    monkeypatch.setattr(ib, "_TILE_ELEMENTS", 256)
    g = torch.Generator().manual_seed(N + 3 * K)
    z = torch.randn(N, D, generator=g, dtype=torch.float64, requires_grad=True)
    E = torch.randn(K, D, generator=g, dtype=torch.float64, requires_grad=True)
    kw = dict(temperature=0.5, sample_minimization_weight=1.0, batch_maximization_weight=0.7)
    loss, hs, hb = ib.ibq_entropy_loss(z, E, **kw)
    rloss, rhs, rhb = ib.ibq_entropy_loss_reference(z, E, **kw)
    torch.testing.assert_close(loss, rloss)
    torch.testing.assert_close(hs, rhs)
    torch.testing.assert_close(hb, rhb)
    a = torch.autograd.grad(loss, (z, E))
    b = torch.autograd.grad(rloss, (z, E))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)
    if N * K <= 100:
        assert torch.autograd.gradcheck(lambda z, E: ib.ibq_entropy_loss(z, E, **kw)[0], (z, E))
