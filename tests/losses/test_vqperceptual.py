"""VQLPIPSWithDiscriminator against hand-computed values and an autograd reference (SPEC §1.5)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vqfast.losses import LPIPS, PerceptualWeightsMissing, VQLPIPSWithDiscriminator, hinge_d_loss, vanilla_d_loss


class ConstD(nn.Module):
    """Discriminator returning a fixed per-sample linear function (hand-computable)."""

    def forward(self, x):
        return x.mean(dim=(1, 2, 3), keepdim=True) * 2.0 + 0.5  # (B, 1, 1, 1)


def _loss(**kw):
    kw.setdefault("perceptual_weight", 0.0)
    loss = VQLPIPSWithDiscriminator(disc_start=kw.pop("disc_start", 0), **kw)
    return loss


def test_hinge_and_vanilla_by_hand():
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-2.0, 0.0])
    # hinge: relu(1-r) = [0.5, 0] mean .25; relu(1+f) = [0, 1] mean .5 → 0.5*(0.75)
    torch.testing.assert_close(hinge_d_loss(real, fake), torch.tensor(0.375))
    expected = 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    torch.testing.assert_close(vanilla_d_loss(real, fake), expected)
    assert hinge_d_loss(torch.zeros(3), torch.zeros(3)).item() == 1.0  # "stuck at 1.0" = logits ≈ 0


def test_generator_loss_hand_computed():
    torch.manual_seed(0)
    loss = _loss(disc_start=0, codebook_weight=0.5, disc_weight=0.8, disc_factor=1.0)
    loss.discriminator = ConstD()
    x = torch.randn(2, 3, 4, 4)
    w = torch.randn(3, 3, 1, 1, requires_grad=True)  # stands in for decoder.conv_out.weight
    h = torch.randn(2, 3, 4, 4)
    xr = F.conv2d(h, w)
    cb = torch.tensor(0.3)
    total, log = loss.generator_loss(cb, x, xr, global_step=5, last_layer=w)
    nll = (x - xr).abs().mean()
    g = -(xr.mean(dim=(1, 2, 3)) * 2.0 + 0.5).mean()
    gn = torch.autograd.grad(nll, w, retain_graph=True)[0].norm()
    gg = torch.autograd.grad(g, w, retain_graph=True)[0].norm()
    lam = (gn / (gg + 1e-4)).clamp(0, 1e4) * 0.8
    torch.testing.assert_close(log["train/d_weight"], lam)
    torch.testing.assert_close(total, nll + lam * g + 0.5 * 0.3)
    torch.testing.assert_close(log["train/nll_loss"], nll.detach())
    torch.testing.assert_close(log["train/rec_loss"], nll.detach())
    assert set(log) == {f"train/{k}" for k in
                        ["total_loss", "quant_loss", "nll_loss", "rec_loss", "p_loss", "d_weight", "disc_factor",
                         "g_loss"]}
    # the adaptive weight is a constant: gradient = ∇nll + λ∇g + 0
    total.backward()
    w2 = w.detach().clone().requires_grad_(True)
    xr2 = F.conv2d(h, w2)
    ref = (x - xr2).abs().mean() + lam.detach() * -(xr2.mean(dim=(1, 2, 3)) * 2.0 + 0.5).mean()
    ref.backward()
    torch.testing.assert_close(w.grad, w2.grad)


def test_disc_start_gates_both_phases():
    loss = _loss(disc_start=10)
    loss.discriminator = ConstD()
    x, xr = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4, requires_grad=True)
    w = torch.ones(1, requires_grad=True)
    xr_w = xr * w
    total, log = loss.generator_loss(torch.tensor(0.0), x, xr_w, global_step=9, last_layer=w)
    assert log["train/disc_factor"].item() == 0.0
    torch.testing.assert_close(total, (x - xr_w).abs().mean())
    d9, _ = loss.discriminator_loss(x, xr, 9)
    d10, dlog = loss.discriminator_loss(x, xr, 10)
    assert d9.item() == 0.0 and d10.item() > 0.0
    assert set(dlog) == {"train/disc_loss", "train/logits_real", "train/logits_fake"}
    total10, log10 = loss.generator_loss(torch.tensor(0.0), x, xr_w, global_step=10, last_layer=w)
    assert log10["train/disc_factor"].item() == 1.0


def test_disc_train_start_and_skip_weight_options():
    loss = _loss(disc_start=10, disc_train_start=3, adaptive_weight_before_start=False)
    loss.discriminator = ConstD()
    x, xr = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert loss.discriminator_loss(x, xr, 3)[0].item() > 0
    w = torch.ones(1, requires_grad=True)
    _, log = loss.generator_loss(torch.tensor(0.0), x, xr * w, global_step=4, last_layer=w)
    assert log["train/d_weight"].item() == 0.0


def test_nonfinite_d_weight_replaced():
    loss = _loss(disc_start=0)
    loss.discriminator = ConstD()
    w = torch.ones(1, requires_grad=True)
    x = torch.randn(1, 3, 2, 2)
    xr = torch.full((1, 3, 2, 2), float("nan")) * w
    _, log = loss.generator_loss(torch.tensor(0.0), x, xr, 0, last_layer=w)
    assert log["train/d_weight"].item() == 0.0


def test_forward_dispatch_and_errors():
    loss = _loss(disc_start=0, disc_num_layers=1, disc_ndf=8)
    x, xr = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    d, log = loss(torch.tensor(0.1), x, xr, 1, 0)
    assert "train/disc_loss" in log
    with pytest.raises(ValueError, match="optimizer_idx"):
        loss(torch.tensor(0.1), x, xr, 2, 0)
    with pytest.raises(ValueError, match="disc_conditional"):
        loss(torch.tensor(0.1), x, xr, 1, 0, cond=x)
    with pytest.raises(ValueError, match="disc_loss"):
        VQLPIPSWithDiscriminator(0, disc_loss="wasserstein")


def test_lpips_frozen_eval_and_random_backbone():
    loss = VQLPIPSWithDiscriminator(0, perceptual_backbone="random", disc_ndf=8, disc_num_layers=1)
    loss.train()
    assert not loss.perceptual_loss.training and all(not m.training for m in loss.perceptual_loss.modules())
    assert all(not p.requires_grad for p in loss.perceptual_loss.parameters())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    xr = (x + 0.1 * torch.randn_like(x)).requires_grad_(True)
    a = loss.perceptual_loss(x, xr)
    b = loss.perceptual_loss(x, xr)
    assert a.shape == (2, 1, 1, 1)
    torch.testing.assert_close(a, b)  # no live dropout
    nll, _, p = loss.reconstruction_terms(x, xr)
    torch.testing.assert_close(nll, ((x - xr).abs() + a).mean())
    nll.backward()
    assert xr.grad is not None


def test_lpips_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(PerceptualWeightsMissing, match="vgg16-397923af.pth") as err:
        LPIPS("imagenet")
    assert str(tmp_path / "checkpoints") in str(err.value)


def test_lpips_loads_backbone_from_hub_cache(tmp_path, monkeypatch):
    import torchvision
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    vgg = torchvision.models.vgg16()
    (tmp_path / "checkpoints").mkdir()
    torch.save(vgg.state_dict(), tmp_path / "checkpoints" / "vgg16-397923af.pth")
    net = LPIPS("imagenet")
    torch.testing.assert_close(net.net.net.slice3.get_submodule("14").weight, vgg.features[14].weight)
