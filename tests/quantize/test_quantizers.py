"""VectorQuantizer / EMAVectorQuantizer against literal transcriptions of taming's modules."""
import pytest
import torch
import torch.nn.functional as F

from helpers import BACKENDS, device
from vqfast.errors import InputError
from vqfast.quantize import EMAVectorQuantizer, VectorQuantizer


def taming_vq2(z, weight, beta, legacy):
    """taming VectorQuantizer2.forward as written (einsum distances, argmin, two MSEs, z + sg(q - z))."""
    zp = z.permute(0, 2, 3, 1).contiguous()
    zf = zp.view(-1, weight.shape[1])
    d = (zf ** 2).sum(1, keepdim=True) + (weight ** 2).sum(1) - 2 * torch.einsum("bd,dn->bn", zf, weight.t())
    idx = torch.argmin(d, dim=1)
    zq = F.embedding(idx, weight).view(zp.shape)
    if legacy:
        loss = torch.mean((zq.detach() - zp) ** 2) + beta * torch.mean((zq - zp.detach()) ** 2)
    else:
        loss = beta * torch.mean((zq.detach() - zp) ** 2) + torch.mean((zq - zp.detach()) ** 2)
    zq = zp + (zq - zp).detach()
    return zq.permute(0, 3, 1, 2).contiguous(), loss, idx


def clustered(B, C, H, W, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(K, C, generator=g) * 2
    pick = torch.randint(0, K, (B * H * W,), generator=g)
    z = (centers[pick] + 0.05 * torch.randn(B * H * W, C, generator=g)).view(B, H, W, C).permute(0, 3, 1, 2)
    return z.contiguous().to(device()), centers.to(device())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("legacy", [True, False])
def test_vector_quantizer_matches_taming(backend, legacy):
    torch.manual_seed(0)
    vq = VectorQuantizer(37, 8, beta=0.25, legacy=legacy, backend=backend).to(device())
    vq.embedding.weight.data.normal_()
    z = torch.randn(2, 8, 5, 7, device=device()).requires_grad_()
    zq, loss, (perp, onehot, idx) = vq(z)
    g = torch.randn_like(zq)
    (zq * g).sum().add(loss * 3).backward()
    w = vq.embedding.weight.detach().clone().requires_grad_()
    z2 = z.detach().clone().requires_grad_()
    tzq, tloss, tidx = taming_vq2(z2, w, 0.25, legacy)
    (tzq * g).sum().add(tloss * 3).backward()
    assert onehot is None and idx.shape == (2 * 5 * 7,)
    torch.testing.assert_close(idx, tidx)
    torch.testing.assert_close(zq, tzq)
    torch.testing.assert_close(loss, tloss)
    torch.testing.assert_close(z.grad, z2.grad)
    torch.testing.assert_close(vq.embedding.weight.grad, w.grad)
    counts = torch.bincount(tidx, minlength=37).float() / tidx.numel()
    torch.testing.assert_close(perp, torch.exp(-(counts * torch.log(counts + 1e-10)).sum()))


def taming_ema_step(w, c, a, z, decay, eps, beta):
    zf = z.permute(0, 2, 3, 1).reshape(-1, w.shape[1])
    d = (zf ** 2).sum(1, keepdim=True) + (w ** 2).sum(1) - 2 * zf @ w.t()
    idx = d.argmin(1)
    q = w[idx]
    onehot = F.one_hot(idx, w.shape[0]).float()
    c = c * decay + onehot.sum(0) * (1 - decay)
    a = a * decay + (onehot.t() @ zf) * (1 - decay)
    n = c.sum()
    w_new = a / ((c + eps) / (n + w.shape[0] * eps) * n)[:, None]
    return idx, beta * F.mse_loss(q, zf), w_new, c, a


@pytest.mark.parametrize("backend", BACKENDS)
def test_ema_quantizer_matches_taming_over_steps(backend):
    torch.manual_seed(1)
    q = EMAVectorQuantizer(16, 6, beta=0.25, decay=0.9, backend=backend).to(device())
    w, c, a = (q.embedding.weight.clone(), q.embedding.cluster_size.clone(), q.embedding.embed_avg.clone())
    for _ in range(5):
        z = torch.randn(3, 6, 4, 4, device=device())
        zq, loss, (_, _, idx) = q(z)
        tidx, tloss, w, c, a = taming_ema_step(w, c, a, z, 0.9, 1e-5, 0.25)
        torch.testing.assert_close(idx, tidx)
        torch.testing.assert_close(loss, tloss)
        torch.testing.assert_close(q.embedding.weight, w, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(q.embedding.cluster_size, c, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(q.embedding.embed_avg, a, atol=1e-5, rtol=1e-5)
    assert not list(q.parameters()), "EMA state must never reach an optimizer"


def test_ema_codebook_gets_no_gradient_and_eval_does_not_update():
    q = EMAVectorQuantizer(8, 4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    zq, loss, _ = q(z)
    (zq.sum() + loss).backward()
    assert z.grad is not None
    q.eval()
    before = q.embedding.weight.clone()
    q(torch.randn(2, 4, 3, 3))
    assert torch.equal(before, q.embedding.weight)


def test_state_dict_names_and_taming_checkpoint_loading():
    vq = VectorQuantizer(10, 4)
    assert "embedding.weight" in vq.state_dict()
    taming_sd = {"embedding.weight": torch.randn(10, 4)}
    vq.load_state_dict(taming_sd, strict=True)                      # health buffers are optional on load
    torch.testing.assert_close(vq.embedding.weight, taming_sd["embedding.weight"])
    ema = EMAVectorQuantizer(10, 4)
    keys = set(ema.state_dict())
    assert {"embedding.weight", "embedding.cluster_size", "embedding.embed_avg"} <= keys
    ema.load_state_dict({"embedding.weight": torch.ones(10, 4), "embedding.cluster_size": torch.ones(10),
                         "embedding.embed_avg": torch.ones(10, 4)}, strict=True)
    # and our own checkpoints round-trip the health state
    ema.steps_unused.fill_(5)
    ema2 = EMAVectorQuantizer(10, 4)
    ema2.load_state_dict(ema.state_dict())
    assert int(ema2.steps_unused[0]) == 5


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_layouts_video_and_tokens(cls):
    q = cls(12, 5, sane_index_shape=True)
    z5 = torch.randn(2, 5, 3, 4, 6)                                   # (B, C, T, H, W)
    zq, loss, (_, _, idx) = q(z5)
    assert zq.shape == z5.shape and idx.shape == (2, 3, 4, 6)
    q.eval()                                                          # EMA: no update between lookup and check
    zq, loss, (_, _, idx) = q(z5)
    torch.testing.assert_close(zq, q.get_codebook_entry(idx, (2, 3, 4, 6, 5)))
    qt = cls(12, 5, layout="channels_last")
    tokens = torch.randn(2, 9, 5)                                     # (B, L, C)
    zq, loss, (_, _, idx) = qt(tokens)
    assert zq.shape == tokens.shape and idx.shape == (18,)
    with pytest.raises(InputError, match="expected embed_dim=5"):
        q(torch.randn(2, 4, 3, 3))
    with pytest.raises(InputError, match="layout='nhwc'"):
        cls(12, 5, layout="nhwc")


def test_health_metrics_dead_codes_and_restart():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 2, dead_code_steps=3)
    q.embedding.weight.data = torch.tensor([[0.0, 0.0]] + [[100.0 + i, 100.0] for i in range(7)])
    z = torch.randn(4, 2, 2, 2) * 0.1                                 # always code 0
    for _ in range(3):
        q(z)
    m = q.codebook_metrics()
    assert int(m["active_codes"]) == 1 and int(m["dead_codes"]) == 7
    assert float(m["perplexity"]) == pytest.approx(1.0)
    qr = VectorQuantizer(8, 2, dead_code_steps=2, restart_dead_codes=True)
    qr.embedding.weight.data = q.embedding.weight.data.clone()
    for _ in range(2):
        qr(z)
    assert int(qr.restarted_codes) == 7
    assert qr.embedding.weight[1:].abs().max() < 1.0                  # moved onto the batch
    assert int(qr.codebook_metrics()["dead_codes"]) == 7               # reported before the restart
    qr(z)
    assert int(qr.codebook_metrics()["active_codes"]) > 1


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_kmeans_init_finds_the_clusters(cls):
    torch.manual_seed(0)
    z, centers = clustered(4, 3, 8, 8, 4, seed=3)
    q = cls(4, 3, kmeans_init=True, kmeans_iters=20)
    assert not bool(q.initted)
    q(z)
    assert bool(q.initted)
    d = torch.cdist(centers, q.embedding.weight)
    assert d.min(1).values.max() < 0.2, d
    q2 = cls(4, 3, kmeans_init=True)
    q2.load_state_dict(q.state_dict())
    w = q2.embedding.weight.clone()
    q2.eval()
    q2(z)                                                             # initted from the checkpoint: no re-init
    assert torch.equal(w, q2.embedding.weight)


def test_ema_training_gradients_equal_across_backends():
    """The EMA step rewrites the codebook in place after the lookup (ema_update_, dead-code expiry): the Triton
    straight-through backward must still use the q of the forward, as the torch path does."""
    from vqfast.quantize import EMAVectorQuantizer

    grads = {}
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        q = EMAVectorQuantizer(16, 8, beta=0.25, decay=0.5, backend=backend).train()  # a large EMA step
        z = torch.randn(2, 8, 4, 4, requires_grad=True)
        zq, loss, _ = q(z)
        (zq.square().sum() + loss).backward()
        grads[backend] = z.grad.clone()
    torch.testing.assert_close(grads["triton"], grads["torch"])
