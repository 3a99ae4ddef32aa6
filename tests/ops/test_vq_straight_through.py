"""vq_straight_through: fused output + loss and analytic backward vs taming's two-MSE autograd graph."""
import pytest
import torch

import vqfast.ops as ops
from helpers import BACKENDS, device
from vqfast.errors import InputError


def taming_graph(z, cb, idx, c_commit, c_book):
    q = cb[idx]
    loss = c_commit * torch.mean((q.detach() - z) ** 2) + c_book * torch.mean((q - z.detach()) ** 2)
    return z + (q - z).detach(), loss


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("c", [(1.0, 0.25), (0.25, 1.0), (0.25, 0.0)], ids=["legacy", "paper", "ema"])
@pytest.mark.parametrize("N,K,D", [(1, 1, 1), (7, 5, 3), (1000, 37, 20), (33, 9, 200)])
def test_forward_and_gradients_match_taming(backend, c, N, K, D):
    g = torch.Generator().manual_seed(N + D)
    z = (torch.randn(N, D, generator=g) + 1).to(device()).requires_grad_()
    cb = torch.randn(K, D, generator=g).to(device()).requires_grad_()
    idx = torch.randint(0, K, (N,), generator=g).to(device())
    gz = torch.randn(N, D, generator=g).to(device())
    z_q, loss = ops.vq_straight_through(z, cb, idx, c_commit=c[0], c_book=c[1], backend=backend)
    dz, dcb = torch.autograd.grad((z_q * gz).sum() + 3 * loss, (z, cb), allow_unused=True)
    z2, cb2 = z.detach().clone().requires_grad_(), cb.detach().clone().requires_grad_()
    tq, tl = taming_graph(z2, cb2, idx, *c)
    tdz, tdcb = torch.autograd.grad((tq * gz).sum() + 3 * tl, (z2, cb2), allow_unused=True)
    torch.testing.assert_close(z_q, tq)
    torch.testing.assert_close(loss, tl, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(dz, tdz, atol=1e-6, rtol=1e-5)
    if c[1]:
        torch.testing.assert_close(dcb, tdcb, atol=1e-6, rtol=1e-5)
    else:
        assert dcb is None or not dcb.abs().any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_z_with_fp32_codebook(backend):
    z = torch.randn(50, 16).to(device()).bfloat16().requires_grad_()
    cb = torch.randn(8, 16).to(device()).requires_grad_()
    idx = torch.randint(0, 8, (50,)).to(device())
    z_q, loss = ops.vq_straight_through(z, cb, idx, c_commit=1.0, c_book=0.25, backend=backend)
    assert z_q.dtype == torch.float32 and loss.dtype == torch.float32
    dz, dcb = torch.autograd.grad(z_q.sum() + loss, (z, cb))
    assert dz.dtype == torch.bfloat16 and dcb.dtype == torch.float32
    r_q, r_l = ops.reference.vq_straight_through(z, cb, idx, c_commit=1.0, c_book=0.25)
    rdz, rdcb = torch.autograd.grad(r_q.sum() + r_l, (z, cb))
    torch.testing.assert_close((z_q, loss, dz.float(), dcb), (r_q, r_l, rdz.float(), rdcb), atol=1e-2, rtol=1e-2)


def test_bad_inputs():
    z, cb, idx = torch.randn(4, 3), torch.randn(5, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(InputError, match="idx has dtype int32"):
        ops.vq_straight_through(z, cb, idx.int(), c_commit=1, c_book=0)
    with pytest.raises(InputError, match="D=3 but codebook has D=2"):
        ops.vq_straight_through(z, cb[:, :2], idx, c_commit=1, c_book=0)
    with pytest.raises(InputError, match="idx has 3 entries"):
        ops.vq_straight_through(z, cb, idx[:3], c_commit=1, c_book=0)
