"""PipelineGANLoss = the seed-002 pipeline's LossCalculator GAN path (SPEC §3.4), against hand-written formulas."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import vqfast.losses.losscalculator as lc
from vqfast.losses import PipelineGANLoss


class StubLPIPS(nn.Module):
    """A hand-computable 'perceptual' distance (B, 1, 1, 1) in place of the VGG LPIPS."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x, y):
        return ((x - y) ** 2).mean(dim=(1, 2, 3), keepdim=True) * 3.0


class LinearD(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return x.mean(dim=(1, 2, 3), keepdim=True) * self.w + 0.25


@pytest.fixture()
def loss(monkeypatch):
    monkeypatch.setattr(lc, "LPIPS", StubLPIPS)
    out = PipelineGANLoss(3, disc_factor=0.8, disc_start=10, pixel_loss_factor=0.7, perceptual_loss_factor=1.3,
                          num_steps=100, disc_num_layers=1, disc_ndf=8)
    out.discriminator = LinearD()
    return out


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    decoder = nn.Conv2d(3, 3, 1)  # its LAST parameter (the bias) is the pipeline's θ
    z = torch.randn(2, 3, 8, 8, generator=g)
    return x, decoder, decoder(z)


def _expected(x, xr, vq, step, theta, d):
    rec = 1.3 * (((x - xr) ** 2).mean(dim=(1, 2, 3)) * 3.0).mean() + 0.7 * F.l1_loss(xr, x)
    g = -d(xr).mean()
    gr = torch.autograd.grad(rec, theta, retain_graph=True)[0]
    gg = torch.autograd.grad(g, theta, retain_graph=True)[0]
    lam = 0.8 * torch.clamp(gr.norm() / (gg.norm() + 1e-4), 0, 100) * min(1.0, abs(step - 10) / 20)
    f = 0.8 if step >= 10 else 0.0
    return rec + vq + f * lam * g, lam


@pytest.mark.parametrize("step", [3, 10, 17, 30, 55])
def test_generator_loss_is_the_pipelines_formula(loss, step):
    x, decoder, xr = _batch()
    vq = torch.tensor(0.3)
    total, logs = loss.generator_loss(vq, x, xr, step, last_layer=decoder.bias)
    want, lam = _expected(x, xr, vq, step, decoder.bias, loss.discriminator)
    torch.testing.assert_close(total, want)
    torch.testing.assert_close(logs["train/lambda_gan"], lam)
    torch.testing.assert_close(logs["train/rec_loss"], F.mse_loss(xr, x))
    assert logs["train/disc_factor"].item() == pytest.approx(0.8 if step >= 10 else 0.0)
    # gradients flow into the decoder through every term
    total.backward()
    assert decoder.weight.grad is not None and torch.isfinite(decoder.weight.grad).all()


def test_lambda_is_one_without_a_parameter_or_a_graph(loss):
    x, decoder, xr = _batch()
    _, logs = loss.generator_loss(torch.tensor(0.0), x, xr, 40, last_layer=None)
    assert logs["train/lambda_gan"].item() == pytest.approx(1.0)  # ramp is 1 at 40 = disc_start + 3·10
    with torch.no_grad():
        _, logs = loss.generator_loss(torch.tensor(0.0), x, decoder(torch.randn(2, 3, 8, 8)), 40,
                                      last_layer=decoder.bias)
    assert logs["train/lambda_gan"].item() == pytest.approx(1.0)


def test_ramp_and_instance_noise_schedule(loss):
    assert [loss.ramp(s) for s in (10, 20, 30, 40, 100)] == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert lc.instance_noise_std(0, 100) == pytest.approx(0.01)
    assert lc.instance_noise_std(25, 100) == pytest.approx(0.005)
    assert lc.instance_noise_std(50, 100) == 0.0 and lc.instance_noise_std(90, 100) == 0.0
    with pytest.raises(ValueError, match="disc_start"):
        PipelineGANLoss(disc_start=0)


@pytest.mark.parametrize("step", [4, 12, 60])
def test_discriminator_loss_hinge_on_noisy_detached_inputs(loss, step):
    x, _, xr = _batch(1)
    d = loss.discriminator
    torch.manual_seed(7)
    out, logs = loss.discriminator_loss(x, xr, step)
    torch.manual_seed(7)
    sigma = max(0.0, 0.01 * (1 - 2 * step / 100))
    xn, xrn = x, xr.detach()
    if sigma > 0:
        xn = x + sigma * torch.randn_like(x)
        xrn = xrn + sigma * torch.randn_like(xrn)
    f = 0.8 if step >= 10 else 0.0
    want = f * 0.5 * (F.relu(1 - d(xn)).mean() + F.relu(1 + d(xrn)).mean())
    torch.testing.assert_close(out, want)
    assert logs["train/gan_loss"] is not None and not logs["train/gan_loss"].requires_grad
    if f:
        out.backward()
        assert d.w.grad is not None
