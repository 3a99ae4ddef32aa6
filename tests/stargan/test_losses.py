"""Latent StarGAN losses vs hand-computed values and autograd references (SPEC §4.2, §4.1 options)."""
import math

import pytest
import torch
from torch.testing import assert_close

from vqfast.errors import InputError
from vqfast.losses import stargan as L


def test_hinge_d_loss_is_two_at_zero_logits():
    zeros = torch.zeros(4, 1, 8, 8)
    assert_close(L.d_hinge_loss(zeros, zeros), torch.tensor(2.0))
    assert_close(L.discriminator_loss(zeros, zeros, zeros), torch.tensor(2.0))


def test_hinge_hand_computed():
    real = torch.tensor([2.0, 0.5, -1.0])   # relu(1-real) = 0, 0.5, 2 → mean 5/6
    fake = torch.tensor([-2.0, 0.0, 1.0])   # relu(1+fake) = 0, 1, 2 → mean 1
    assert_close(L.d_hinge_loss(real, fake), torch.tensor(5 / 6 + 1))
    assert_close(L.g_hinge_loss(fake), torch.tensor(-(-2.0 + 0.0 + 1.0) / 3))
    fake2 = torch.tensor([0.0, 0.0, 0.0])   # mean 1
    assert_close(L.discriminator_loss(real, fake, fake2), torch.tensor(0.5 * ((5 / 6 + 1) + (5 / 6 + 1))))


def test_bce_hand_computed():
    real, fake = torch.tensor([0.0, 1.0]), torch.tensor([0.0, -1.0])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    expect_d = (sp(0.0) + sp(-1.0)) / 2 + (sp(0.0) + sp(-1.0)) / 2
    assert_close(L.discriminator_adv_loss(real, fake, "bce"), torch.tensor(expect_d))
    assert_close(L.generator_adv_loss(fake, "bce"), torch.tensor((sp(0.0) + sp(1.0)) / 2))
    assert_close(L.d_bce_loss(torch.zeros(3), torch.zeros(3)), torch.tensor(2 * math.log(2.0)))
    with pytest.raises(InputError, match="hinge"):
        L.generator_adv_loss(fake, "wgan")


def test_l1_terms_and_diversity_margin():
    a, b = torch.zeros(2, 4, 2, 2), torch.full((2, 4, 2, 2), 0.3)
    for fn in (L.style_reconstruction_loss, L.cycle_consistency_loss, L.identity_loss):
        assert_close(fn(a, b), torch.tensor(0.3))
    assert_close(L.diversity_loss(a, b), torch.tensor(0.3))
    assert_close(L.diversity_loss(a, b, 0.1), torch.tensor(0.1))
    assert_close(L.diversity_loss(a, b, 0.0), torch.tensor(0.3))      # margin <= 0: no clamp
    # gradient: zero beyond the margin, flows into both fakes otherwise (neither detached)
    f1, f2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    L.diversity_loss(f1, f2, 0.1).backward()
    assert f1.grad.abs().sum() == 0 and f2.grad.abs().sum() == 0
    f1, f2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    L.diversity_loss(f1, f2, 1.0).backward()
    assert f1.grad.abs().sum() > 0 and f2.grad.abs().sum() > 0
    f1, f2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    L.diversity_loss(f1, f2, detach_second=True).backward()
    assert f1.grad.abs().sum() > 0 and f2.grad is None


def _tiny_d():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.Tanh(),
                               torch.nn.Conv2d(8, 1, 3, stride=2, padding=1))


def test_r1_matches_per_sample_autograd_reference():
    d = _tiny_d()
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    d = d.double()
    xg = x.clone().requires_grad_(True)
    got = L.r1_penalty(d(xg), xg)
    # reference: each sample's own gradient (D acts per sample), squared L2, batch mean
    expect = 0.0
    for b in range(3):
        xb = x[b:b + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(d(xb).sum(), xb)
        expect += g.pow(2).sum()
    assert_close(got, expect / 3)
    assert_close(L.r1_penalty(d(xg), xg, half=True), 0.5 * expect / 3)
    got.backward()  # create_graph: differentiable w.r.t. D's parameters
    assert d[0].weight.grad is not None and d[2].weight.grad is not None


def test_r1_linear_discriminator_closed_form():
    w = torch.randn(4, 5, 5)
    x = torch.randn(6, 4, 5, 5, requires_grad=True)
    logits = (x * w).flatten(1).sum(1)          # ∂/∂x_b = w for every b
    assert_close(L.r1_penalty(logits, x), w.pow(2).sum())
    with pytest.raises(InputError, match="require grad"):
        L.r1_penalty(logits, x.detach())


@pytest.mark.parametrize("interval", [1, 2, 4, 16])
def test_r1_interval_compensation_mean_weight_independent_of_interval(interval):
    """Lazy R1 on every interval-th step with weight w_r1·interval: mean contribution = w_r1·r1 (exactly when the
    run length is a multiple of the interval)."""
    w_r1, r1, steps = 10.0, 0.37, 160
    total = sum(L.r1_weight(w_r1, interval) * r1 for k in range(1, steps + 1) if k % interval == 0)
    assert total / steps == pytest.approx(w_r1 * r1)


def test_r1_interval_compensation_approximate_on_a_real_penalty():
    """With a penalty that varies per batch, the mean contribution stays ≈ w_r1·E[r1] for any interval."""
    d = _tiny_d()
    g = torch.Generator().manual_seed(1)
    values = []
    for _ in range(64):
        x = torch.randn(4, 4, 8, 8, generator=g).requires_grad_(True)
        values.append(float(L.r1_penalty(d(x), x).detach()))
    full = 10.0 * sum(values) / len(values)
    for interval in (2, 4, 8):
        lazy = sum(L.r1_weight(10.0, interval) * v for k, v in enumerate(values, 1) if k % interval == 0)
        assert lazy / len(values) == pytest.approx(full, rel=0.25)
    with pytest.raises(InputError):
        L.r1_weight(10.0, 0)


def test_lambda_ds_epoch_schedule_exact():
    assert L.lambda_ds_epoch(1, 2.0, 20) == 2.0
    assert L.lambda_ds_epoch(11, 2.0, 20) == pytest.approx(1.0)
    assert L.lambda_ds_epoch(21, 2.0, 20) == 0.0
    assert L.lambda_ds_epoch(22, 2.0, 20) == 0.0
    assert L.lambda_ds_epoch(500, 2.0, 20) == 0.0
    assert L.lambda_ds_epoch(1, 1.0, 1) == 1.0 and L.lambda_ds_epoch(2, 1.0, 1) == 0.0  # code default: 0 from epoch 2
    assert L.lambda_ds_epoch(1, 1.0, 0) == 1.0 and L.lambda_ds_epoch(2, 1.0, 0) == 0.0  # max(1, ·)
    with pytest.raises(InputError):
        L.lambda_ds_epoch(0, 1.0, 20)


def test_lambda_ds_iteration_schedule():
    lam, w, n = 2.0, 2.0, 10
    for k in range(15):  # the StarGAN v2 loop: use, then λ -= w/n while λ > 0
        assert L.lambda_ds_iteration(k, w, n) == pytest.approx(max(lam, 0.0), abs=1e-12)
        if lam > 0:
            lam -= w / n
    assert L.lambda_ds_iteration(10, w, n) == 0.0


def test_generator_loss_combination_and_identity_gate():
    t = {k: torch.tensor(v) for k, v in dict(g_adv=1.0, sty=2.0, cyc=3.0, ds=4.0).items()}
    got = L.generator_loss(**t, w_adv=1, w_sty=2, w_cyc=3, w_id=0, lambda_ds=0.5, id=torch.tensor(100.0))
    assert_close(got, torch.tensor(1 + 4 + 9 - 2.0))
    got = L.generator_loss(**t, w_adv=1, w_sty=2, w_cyc=3, w_id=2, lambda_ds=0.5, id=torch.tensor(1.5))
    assert_close(got, torch.tensor(1 + 4 + 9 - 2.0 + 3.0))
    with pytest.raises(InputError, match="identity"):
        L.generator_loss(**t, w_id=1.0)
