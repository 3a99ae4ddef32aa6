"""compute_loss of DinoVQModel vs hand-computed values (SPEC §5.2)."""
import pytest
import torch
import torch.nn.functional as F
from dvq_helpers import tiny_model

from vqfast.errors import InputError
from vqfast.losses.dinovq import DISCRIMINATOR_KEYS, GENERATOR_KEYS

WEIGHTS = {"dino_loss_weight": 2.0, "recon_loss_weight": 0.7, "vq_loss_weight": 0.5}


def _cos_loss(pred, target):
    a, b = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return 1 - cos.mean()


def test_generator_keys_and_weighting(batch):
    imgs, feats = batch
    model = tiny_model(**WEIGHTS).eval()  # eval: no EMA update, so two forwards agree
    losses = model.compute_loss(imgs, feats, "generator", 0)
    assert tuple(losses) == GENERATOR_KEYS
    out = model(imgs)
    dino = _cos_loss(out["dino_features"], feats)
    recon = ((out["reconstructed_imgs"] - imgs) ** 2).mean()
    q = model.quantize.embedding.weight[out["indices"].reshape(-1)]  # (B·L, D)
    vq = 0.25 * ((q - out["z"].reshape(-1, 32)) ** 2).mean()
    expect = {"dino_loss": dino, "recon_loss": recon, "vq_loss": vq, "perceptual_loss": 0.0, "gen_adv_loss": 0.0,
              "dino_loss_weighted": 2.0 * dino, "recon_loss_weighted": 0.7 * recon, "vq_loss_weighted": 0.5 * vq,
              "perceptual_loss_weighted": 0.0, "gen_adv_loss_weighted": 0.0,
              "total_loss": 2.0 * dino + 0.7 * recon + 0.5 * vq}
    for key, value in expect.items():
        torch.testing.assert_close(losses[key].detach(), torch.as_tensor(value, dtype=torch.float32).detach(),
                                   rtol=1e-5, atol=1e-6, msg=key)
    assert losses["total_loss"].requires_grad


def test_flat_and_grid_targets_agree(batch):
    imgs, feats = batch
    model = tiny_model().eval()
    a = model.compute_loss(imgs, feats)["dino_loss"]
    b = model.compute_loss(imgs, feats.reshape(4, 16, 24))["dino_loss"]
    torch.testing.assert_close(a, b)


def test_bad_inputs_raise(batch):
    imgs, feats = batch
    model = tiny_model().eval()
    with pytest.raises(InputError, match="dino_features_gt"):
        model.compute_loss(imgs, feats[..., :10])
    with pytest.raises(InputError, match="update_type"):
        model.compute_loss(imgs, feats, "critic")
    with pytest.raises(InputError, match="residual_grad"):
        tiny_model(residual_grad="sometimes")


def test_gan_off_discriminator_dict_is_zeros(batch):
    imgs, feats = batch
    model = tiny_model()
    d = model.compute_loss(imgs, feats, "discriminator", 10 ** 6)
    assert tuple(d) == DISCRIMINATOR_KEYS
    assert float(d["disc_loss"]) == 0.0 and d["disc_weight"] == 0.0
    assert d["logits_real"] == 0.0 and d["logits_fake"] == 0.0
    g = model.compute_loss(imgs, feats, "generator", 10 ** 6)
    assert float(g["gen_adv_loss"]) == 0.0 and float(g["gen_adv_loss_weighted"]) == 0.0


def test_disc_start_is_honoured(batch):
    imgs, feats = batch
    model = tiny_model(use_gan=True, disc_start=5, disc_weight=0.5).eval()
    recon = model(imgs)["reconstructed_imgs"].detach()
    before = model.compute_loss(imgs, feats, "discriminator", 4, reconstructed_imgs=recon)
    assert before["disc_weight"] == 0.0 and float(before["disc_loss"].detach()) == 0.0
    g_before = model.compute_loss(imgs, feats, "generator", 4)
    assert float(g_before["gen_adv_loss_weighted"]) == 0.0
    assert float(g_before["gen_adv_loss"]) != 0.0  # still logged, unweighted
    after = model.compute_loss(imgs, feats, "discriminator", 5, reconstructed_imgs=recon)
    D = model.discriminator
    hinge = 0.5 * (F.relu(1 - D(imgs)).mean() + F.relu(1 + D(recon)).mean())
    assert after["disc_weight"] == 0.5
    torch.testing.assert_close(after["disc_loss"], 0.5 * hinge)
    torch.testing.assert_close(after["logits_real"], D(imgs).mean().detach())
    torch.testing.assert_close(after["logits_fake"], D(recon).mean().detach())
    g_after = model.compute_loss(imgs, feats, "generator", 5)
    torch.testing.assert_close(g_after["gen_adv_loss_weighted"], 0.5 * g_after["gen_adv_loss"])
    # without reconstructed_imgs the reference's second forward gives the same value (eval: no EMA change)
    again = model.compute_loss(imgs, feats, "discriminator", 5)
    torch.testing.assert_close(again["disc_loss"], after["disc_loss"])


def test_adaptive_weight_matches_autograd_reference(batch):
    imgs, feats = batch
    model = tiny_model(use_gan=True, disc_start=0, disc_weight=0.5, disc_adaptive_weight=True,
                       recon_loss_weight=0.7).eval()
    losses = model.compute_loss(imgs, feats, "generator", 3)
    out = model(imgs)
    x_hat = out["reconstructed_imgs"]
    W = model.last_layer
    nll = 0.7 * F.mse_loss(x_hat, imgs)  # the DINO term is not in the numerator
    g = -model.discriminator(x_hat).mean()
    gn = torch.autograd.grad(nll, W, retain_graph=True)[0].norm()
    gg = torch.autograd.grad(g, W, retain_graph=True)[0].norm()
    lam = torch.clamp(gn / (gg + 1e-4), 0.0, 1e4)
    torch.testing.assert_close(losses["gen_adv_loss"].detach(), g.detach())
    torch.testing.assert_close(losses["gen_adv_loss_weighted"].detach(), (lam * 0.5 * g).detach())
    total = (losses["dino_loss_weighted"] + losses["recon_loss_weighted"] + losses["vq_loss_weighted"]
             + losses["gen_adv_loss_weighted"])
    torch.testing.assert_close(losses["total_loss"], total)
    # λ is detached: d total / d W equals the reference with a constant λ
    model.zero_grad(set_to_none=True)
    losses["total_loss"].backward()
    got = W.grad.clone()
    model.zero_grad(set_to_none=True)
    out = model(imgs)
    ref = (1.0 * _cos_loss(out["dino_features"], feats) + 0.7 * F.mse_loss(out["reconstructed_imgs"], imgs)
           + out["vq_loss"] + lam.detach() * 0.5 * -model.discriminator(out["reconstructed_imgs"]).mean())
    ref.backward()
    torch.testing.assert_close(got, W.grad, rtol=1e-4, atol=1e-6)


def test_perceptual_term_weighted(batch):
    imgs, feats = batch
    model = tiny_model(use_perceptual=True, perceptual_weight=0.3, perceptual_backbone="random").eval()
    losses = model.compute_loss(imgs, feats)
    out = model(imgs)
    p = model.loss_fn.perceptual(out["reconstructed_imgs"], imgs).mean()
    torch.testing.assert_close(losses["perceptual_loss"], p)
    torch.testing.assert_close(losses["perceptual_loss_weighted"], 0.3 * p)
    # LPIPS is frozen and kept out of parameters()/state_dict (no optimizer, no VGG in checkpoints)
    assert not any("perceptual" in k for k in model.state_dict())
    assert all(p.requires_grad for p in model.generator_parameters())


def test_residual_grad_option(batch):
    imgs, _feats = batch
    grads = {}
    for mode in ("none", "encoder"):
        model = tiny_model(residual_grad=mode).eval()
        out = model(imgs)
        # gradient of the pixel loss through the residual branch only (e held constant)
        r = out["r"]
        (model.decode(out["e"].detach(), r) - imgs).square().mean().backward()
        grads[mode] = model.encoder.patch_embed.proj.weight.grad
    assert grads["none"] is None or float(grads["none"].abs().sum()) == 0.0  # r = sg(z - q) under STE
    assert grads["encoder"] is not None and float(grads["encoder"].abs().sum()) > 0.0
