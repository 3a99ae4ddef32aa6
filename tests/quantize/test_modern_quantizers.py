"""FSQ, ResidualFSQ, LFQ, BSQ, ResidualVQ, SimVQ, IBQ and the rotation trick against vector-quantize-pytorch
(a test dependency) and transcriptions of BSQ-ViT's and SEED-Voken's formulas."""
import math

import pytest
import torch
import torch.nn.functional as F

from vqfast.errors import InputError
from vqfast.quantize import (
    BSQ,
    FSQ,
    IBQ,
    LFQ,
    EMAVectorQuantizer,
    ResidualFSQ,
    ResidualVQ,
    SimVQ,
    VectorQuantizer,
    rotate_to,
)

vqp = pytest.importorskip("vector_quantize_pytorch")


@pytest.mark.parametrize("levels,dim,sym", [([8, 5, 5, 5], None, False), ([7, 5, 3], 6, False),
                                            ([2, 4, 3], None, True)])
def test_fsq_matches_vector_quantize_pytorch_exactly(levels, dim, sym):
    torch.manual_seed(0)
    ref = vqp.FSQ(levels=levels, dim=dim, preserve_symmetry=sym)
    q = FSQ(levels, dim, preserve_symmetry=sym)
    if q.has_projections:
        q.project_in.load_state_dict(ref.project_in.state_dict())
        q.project_out.load_state_dict(ref.project_out.state_dict())
    z = torch.randn(2, dim or len(levels), 5, 7) * 2
    out, idx = ref(z)
    zq, loss, (perp, none, idx2) = q(z)
    assert none is None and float(loss) == 0.0
    assert torch.equal(zq, out) and torch.equal(idx2, idx.reshape(-1).long())
    assert torch.equal(q.get_codebook_entry(idx2, (2, 5, 7, dim or len(levels))), zq)
    counts = torch.bincount(idx2, minlength=q.codebook_size).float() / idx2.numel()
    torch.testing.assert_close(perp, torch.exp(-torch.special.xlogy(counts, counts).sum()))


def test_residual_fsq_matches_and_dropout_masks():
    torch.manual_seed(0)
    ref = vqp.ResidualFSQ(levels=[8, 5, 5], num_quantizers=3, dim=5).eval()
    q = ResidualFSQ([8, 5, 5], 3, dim=5, layout="channels_last").eval()
    q.project_in.load_state_dict(ref.project_in.state_dict())
    q.project_out.load_state_dict(ref.project_out.state_dict())
    z = torch.randn(2, 11, 5)
    out, idx = ref(z)
    zq, _, (_, _, idx2) = q(z)
    torch.testing.assert_close(zq, out)
    assert torch.equal(idx2, idx.reshape(-1, 3).long())
    torch.testing.assert_close(q.get_codebook_entry(idx2, (2, 11, 5)), zq)
    qd = ResidualFSQ([5, 5], 4, quantize_dropout=True, layout="channels_last").train()
    seen = {int((qd(torch.randn(1, 3, 2))[2][2] == -1).any(0).sum()) for _ in range(20)}
    assert len(seen) > 1                                              # the kept depth varies per step


@pytest.mark.parametrize("dim,cs,spherical", [(6, None, False), (5, 16, False), (6, None, True)])
def test_lfq_matches_vector_quantize_pytorch(dim, cs, spherical):
    torch.manual_seed(0)
    ref = vqp.LFQ(dim=dim, codebook_size=cs, entropy_loss_weight=0.1, commitment_loss_weight=0.25,
                  spherical=spherical)
    q = LFQ(dim, cs, spherical=spherical, inv_temperature=10.0)
    if q.has_projections:
        q.project_in.load_state_dict(ref.project_in.state_dict())
        q.project_out.load_state_dict(ref.project_out.state_dict())
    z = torch.randn(2, dim, 3, 5)
    (out, idx, aux), parts = ref(z, inv_temperature=10.0, return_loss_breakdown=True)
    zq, loss, (_, _, idx2) = q(z)
    assert torch.equal(zq, out) and torch.equal(idx2, idx.reshape(-1).long())
    m = q.codebook_metrics()
    # vector-quantize-pytorch clamps p at 1e-5 inside its logs: equal up to K * 1e-5
    tol = q.codebook_size * 1e-5
    assert abs(float(m["codebook_entropy"]) - float(parts.batch_entropy.detach())) < tol
    assert abs(float(m["per_sample_entropy"]) - float(parts.per_sample_entropy.detach())) < tol
    assert abs(float(loss.detach()) - float(aux.detach())) < tol
    q.eval()
    ref.eval()
    out, idx, _ = ref(z)
    zq, _, (_, _, idx2) = q(z)
    assert torch.equal(zq, out) and torch.equal(idx2, idx.reshape(-1).long())
    assert torch.equal(q.get_codebook_entry(idx2, (2, 3, 5, dim)), zq)


def test_lfq_entropy_loss_is_the_exact_fp64_table_value_and_trains():
    torch.manual_seed(1)
    q = LFQ(8, entropy_loss_weight=1.0, commitment_loss_weight=0.0, diversity_gamma=1.0, inv_temperature=3.0,
            layout="channels_last")
    x = torch.randn(50, 8, dtype=torch.float32, requires_grad=True)
    _, loss, _ = q(x)
    x64 = x.detach().double()
    codes = ((torch.arange(256)[:, None] >> torch.arange(7, -1, -1)) & 1).double() * 2 - 1
    prob = torch.softmax(2 * 3.0 * x64 @ codes.t(), dim=1)
    avg = prob.mean(0)
    expect = -torch.special.xlogy(prob, prob).sum(1).mean() + torch.special.xlogy(avg, avg).sum()
    torch.testing.assert_close(loss.double(), expect, atol=1e-5, rtol=1e-5)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def bsq_vit(z, beta, gamma0, gamma, zeta, inv_t, group):
    """BSQ-ViT BinarySphericalQuantizer.forward (soft entropy, analytical per-sample, l2_norm=True) as
    written, on an already normalised z (B, L, d)."""
    d = z.shape[-1]
    zhat = torch.where(z > 0, 1.0, -1.0)
    zq = z + (zhat - z).detach()
    gc = ((torch.arange(2 ** group)[:, None] >> torch.arange(group - 1, -1, -1)) & 1).to(z.dtype) * 2 - 1
    gcb = gc / d ** 0.5
    dz = z.reshape(*z.shape[:-1], d // group, group)
    prob = (2 * torch.einsum("...gc,dc->...gd", dz, gcb) * inv_t).softmax(-1)
    p = torch.sigmoid(-4 * z / d ** 0.5 * inv_t)
    pr = torch.stack([p, 1 - p], -1)
    ps = (-(pr * torch.log(pr + 1e-8)).sum(-1)).sum(-1).mean()
    avg = prob.reshape(-1, d // group, 2 ** group).mean(0)
    cb = (-(avg * torch.log(avg + 1e-8)).sum(-1)).sum()
    zq = zq / d ** 0.5
    commit = beta * torch.mean(((zq.detach() - z) ** 2).sum(-1))
    return zq, commit + zeta * (gamma0 * ps - gamma * cb) / inv_t


@pytest.mark.parametrize("group", [6, 3])
def test_bsq_matches_bsq_vit_formula(group):
    torch.manual_seed(2)
    z = F.normalize(torch.randn(2, 10, 6, dtype=torch.float64), dim=-1)
    zq_ref, loss_ref = bsq_vit(z, 0.25, 1.0, 1.0, 1.0, 2.0, group)
    q = BSQ(6, 0.25, 1.0, 1.0, 1.0, inv_temperature=2.0, group_size=group, layout="channels_last")
    zq, loss, (_, _, idx) = q(z.float())
    torch.testing.assert_close(zq.double(), zq_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(loss.double(), loss_ref, atol=1e-5, rtol=1e-5)   # BSQ-ViT's log(p + 1e-8)
    torch.testing.assert_close(q.get_codebook_entry(idx, (2, 10, 6)), zq)


def test_residual_vq_matches_vector_quantize_pytorch_with_copied_codebooks():
    torch.manual_seed(0)
    ref = vqp.ResidualVQ(dim=6, num_quantizers=3, codebook_size=32).eval()
    q = ResidualVQ(3, 32, 6, layout="channels_last").eval()
    for i in range(3):
        q.layers[i].embedding.weight.copy_(ref.layers[i]._codebook.embed[0].detach())
    x = torch.randn(2, 9, 6)
    out, idx, _ = ref(x)
    zq, _, (_, _, idx2) = q(x)
    assert torch.equal(idx2, idx.reshape(-1, 3))
    torch.testing.assert_close(zq, out)
    torch.testing.assert_close(q.get_codebook_entry(idx2, (2, 9, 6)), zq)


@pytest.mark.parametrize("ema", [True, False])
def test_residual_vq_trains_shared_and_dropout(ema):
    torch.manual_seed(0)
    q = ResidualVQ(4, 16, 3, shared_codebook=True, quantize_dropout=True, ema_update=ema)
    assert len(q.layers) == 1
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    zq, loss, (perp, _, idx) = q(z)
    (zq.sum() + loss).backward()
    assert idx.shape == (32, 4) and z.grad is not None and perp > 0
    assert "stage0/perplexity" in q.codebook_metrics()
    if not ema:
        assert q.layers[0].embedding.weight.grad is not None


def test_simvq_matches_vector_quantize_pytorch_including_gradients():
    torch.manual_seed(0)
    ref = vqp.SimVQ(dim=6, codebook_size=40)
    q = SimVQ(6, 40, layout="channels_last")
    q.frozen_codebook.copy_(ref.frozen_codebook)
    q.code_transform.load_state_dict(ref.code_transform.state_dict())
    x = torch.randn(2, 9, 6, requires_grad=True)
    out, idx, loss = ref(x)
    zq, loss2, (_, _, idx2) = q(x)
    assert torch.equal(idx2, idx.reshape(-1))
    torch.testing.assert_close(zq, out)
    torch.testing.assert_close(loss2, loss)
    g = torch.randn_like(out)
    ga = torch.autograd.grad((out * g).sum() + loss, [x, ref.code_transform.weight])
    gb = torch.autograd.grad((zq * g).sum() + loss2, [x, q.code_transform.weight])
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b)


def test_rotation_trick_matches_vector_quantize_pytorch_and_gradcheck():
    from vector_quantize_pytorch.vector_quantize_pytorch import rotate_to as vqp_rotate
    src = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    tgt = torch.randn(7, 5, dtype=torch.float64)
    a, b = vqp_rotate(src, tgt), rotate_to(src, tgt)
    torch.testing.assert_close(b, tgt)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(torch.autograd.grad(a.square().sum(), src)[0],
                               torch.autograd.grad(b.square().sum(), src)[0])
    for cls in (VectorQuantizer, EMAVectorQuantizer):
        q = cls(10, 4, rotation_trick=True)
        z = torch.randn(2, 4, 3, 3, requires_grad=True)
        zq, loss, (_, _, idx) = q(z)
        (zq * torch.randn_like(zq)).sum().backward()
        q.eval()
        torch.testing.assert_close(zq.detach(), q.get_codebook_entry(idx, (2, 3, 3, 4)), atol=1e-5, rtol=1e-5)
        assert z.grad is not None


def test_ibq_entropy_loss_option_matches_seed_voken():
    from vqfast.ops.ibq_soft import ibq_entropy_loss_reference
    torch.manual_seed(0)
    q = IBQ(37, 5, use_entropy_loss=True, entropy_temperature=0.1, entropy_loss_weight=0.5)
    z = torch.randn(2, 5, 3, 4)
    _, loss, _ = q(z)
    w = q.embedding.weight.detach()
    _, base, _ = seed_voken_ibq(z, w, 0.25)
    ent, _, _ = ibq_entropy_loss_reference(z.movedim(1, -1).reshape(-1, 5), w, temperature=0.1)
    torch.testing.assert_close(loss, base + 0.5 * ent)
    assert "codebook_entropy" in q.codebook_metrics()


def seed_voken_ibq(z, weight, beta):
    """SEED-Voken IndexPropagationQuantize.forward, training branch, as written (z: (B, D, H, W))."""
    logits = torch.einsum("bdhw,nd->bnhw", z, weight)
    soft = F.softmax(logits, dim=1)
    ind = soft.max(1, keepdim=True)[1]
    hard = torch.zeros_like(logits).scatter_(1, ind, 1.0)
    one_hot = hard - soft.detach() + soft
    z_q = torch.einsum("bnhw,nd->bdhw", one_hot, weight)
    z_q2 = torch.einsum("bnhw,nd->bdhw", hard, weight)
    loss = torch.mean((z_q - z) ** 2) + torch.mean((z_q2.detach() - z) ** 2) + beta * torch.mean((z_q2 - z.detach()) ** 2)
    return z_q, loss, ind.flatten()


def test_ibq_matches_seed_voken_formula_values_and_gradients():
    torch.manual_seed(0)
    q = IBQ(37, 5, beta=0.25)
    z = torch.randn(2, 5, 3, 4, requires_grad=True)
    zq, loss, (perp, _, idx) = q(z)
    g = torch.randn_like(zq)
    (zq * g).sum().add(loss).backward()
    w = q.embedding.weight.detach().clone().requires_grad_()
    z2 = z.detach().clone().requires_grad_()
    rq, rloss, ridx = seed_voken_ibq(z2, w, 0.25)
    (rq * g).sum().add(rloss).backward()
    torch.testing.assert_close(idx, ridx.reshape(2, 3, 4).permute(0, 1, 2).reshape(-1))
    torch.testing.assert_close(zq, rq)
    torch.testing.assert_close(loss, rloss)
    torch.testing.assert_close(z.grad, z2.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(q.embedding.weight.grad, w.grad, atol=1e-5, rtol=1e-4)
    assert perp > 1


@pytest.mark.parametrize("make", [lambda: FSQ([5, 4, 3], layout="channels_last", sane_index_shape=True),
                                  lambda: LFQ(4, layout="channels_last", sane_index_shape=True),
                                  lambda: BSQ(4, layout="channels_last", sane_index_shape=True),
                                  lambda: SimVQ(3, 9, layout="channels_last", sane_index_shape=True),
                                  lambda: IBQ(9, 3, layout="channels_last", sane_index_shape=True)])
def test_token_layout_and_health(make):
    q = make()
    d = q.embed_dim
    tokens = torch.randn(2, 7, d)
    zq, loss, (perp, _, idx) = q(tokens)
    assert zq.shape == tokens.shape and idx.shape == (2, 7)
    m = q.codebook_metrics()
    assert {"perplexity", "active_codes", "dead_codes"} <= set(m)
    assert 1 <= int(m["active_codes"]) <= 14
    with pytest.raises(InputError):
        q(torch.randn(2, 7, d + 1))


def test_constructor_errors():
    with pytest.raises(InputError, match="preserve_symmetry"):
        FSQ([2, 3])
    with pytest.raises(InputError, match="power of two"):
        LFQ(codebook_size=100)
    with pytest.raises(InputError, match="group_size"):
        BSQ(6, group_size=4)
    with pytest.raises(InputError):
        ResidualVQ(0, 8, 3)
    assert math.isclose(LFQ(18).codebook_size, 2 ** 18)


def test_residual_vq_beam_search_greedy_exhaustive_and_training():
    torch.manual_seed(0)
    q = ResidualVQ(2, 4, 3, layout="channels_last", ema_update=False).eval()
    x = torch.randn(1, 50, 3)
    _, _, (_, _, greedy) = q(x)
    q.beam_size = 1
    assert torch.equal(q.beam_search(x[0]), greedy)
    q.beam_size = 16                                                  # >= K^Q: exhaustive
    best = q.beam_search(x[0])
    W0, W1 = q.layers[0].embedding.weight, q.layers[1].embedding.weight
    cand = (W0[:, None, :] + W1[None, :, :]).reshape(16, 3)
    brute = torch.cdist(x[0], cand).argmin(1)
    torch.testing.assert_close(((x[0] - W0[best[:, 0]] - W1[best[:, 1]]) ** 2).sum(1),
                               ((x[0] - cand[brute]) ** 2).sum(1))
    q.beam_size = 4
    zq, _, (_, _, idx) = q(x)
    err_beam = ((zq - x) ** 2).sum(-1).mean()
    zg = W0[greedy[:, 0]] + W1[greedy[:, 1]]
    assert err_beam <= ((zg - x[0]) ** 2).sum(-1).mean() + 1e-6
    qt = ResidualVQ(3, 8, 3, beam_size=3, decay=0.9)                  # EMA stages, training
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    w_before = qt.layers[0].embedding.weight.clone()
    zq, loss, (_, _, idx) = qt(z)
    (zq.sum() + loss).backward()
    assert idx.shape == (32, 3) and z.grad is not None and not torch.equal(w_before, qt.layers[0].embedding.weight)
    with pytest.raises(InputError, match="beam_size"):
        ResidualVQ(2, 8, 3, beam_size=2, kmeans_init=True)
