"""ibq_soft: streamed online-softmax straight-through against the eager SEED-Voken formula (fp64)."""
import pytest
import torch

from vqfast.errors import BackendError
from vqfast.ops import ibq_soft as ib


@pytest.mark.parametrize("N,K,D", [(1, 1, 3), (7, 5, 4), (37, 1000, 8), (1823, 7, 5)])
def test_matches_eager_formula_fp64(N, K, D, monkeypatch):
    monkeypatch.setattr(ib, "_TILE_ELEMENTS", 64)                      # many (rows x codes) tiles
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


def test_fp32_parity_and_errors():
    torch.manual_seed(0)
    z = torch.randn(50, 6, requires_grad=True)
    E = torch.randn(300, 6, requires_grad=True)
    idx = (z @ E.t()).argmax(1)
    go = torch.randn(50, 6)
    a = torch.autograd.grad((ib.ibq_soft(z, E, idx) * go).sum(), (z, E))
    b = torch.autograd.grad((ib.ibq_soft_reference(z, E, idx) * go).sum(), (z, E))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)             # fp32 summation order
    with pytest.raises(BackendError):
        ib.ibq_soft(z, E, idx, backend="triton")
