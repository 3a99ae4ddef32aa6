"""Stage2Loss parity with hand-computed QuantArt terms (SPEC §2.3) and the style statistics on both backends."""
import pytest
import torch
import torch.nn.functional as F

from vqfast.losses.quantart import Stage2Loss, calc_mean_std, style_loss
from vqfast.ops import triton_available

G_KEYS = {"total_loss", "quant_x2y_loss", "reverse_loss", "style_loss", "d_weight", "disc_factor", "g_loss"}
D_KEYS = {"disc_loss", "logits_real", "logits_fake"}


def ref_mean_std(feat, eps=1e-5):
    """QuantArt calc_mean_std, written out: unbiased var over H·W, + eps, sqrt."""
    b, c = feat.shape[:2]
    flat = feat.reshape(b, c, -1)
    return flat.mean(-1), (flat.var(-1, unbiased=True) + eps).sqrt()


def ref_style_loss(out, ref):
    mu_o, sd_o = ref_mean_std(out)
    mu_r, sd_r = ref_mean_std(ref)
    return ((mu_o - mu_r) ** 2).mean() + ((sd_o - sd_r) ** 2).mean()


def latents(b=2, c=8, h=8, w=8, scale=1.0, shift=0.0):
    return torch.randn(b, c, h, w) * scale + shift


BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.skipif(not triton_available(),
                                                                      reason="triton not importable"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape,scale,shift", [((2, 8, 5, 6), 1.0, 0.0), ((1, 3, 1, 2), 2.0, 0.5),
                                               ((3, 7, 4, 4), 0.01, 100.0)])
def test_style_loss_matches_hand_computed_values_and_gradients(backend, shape, scale, shift):
    out = latents(*shape, scale=scale, shift=shift).double().float().requires_grad_(True)
    ref = latents(*shape, scale=scale * 1.5, shift=shift).float()
    loss = style_loss(out, ref, backend=backend)
    (grad,) = torch.autograd.grad(loss, out)
    out64 = out.detach().double().requires_grad_(True)
    expected = ref_style_loss(out64, ref.double())
    (grad64,) = torch.autograd.grad(expected, out64)
    torch.testing.assert_close(loss.double(), expected, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(grad.double(), grad64, atol=1e-7, rtol=1e-3)


@pytest.mark.skipif(not triton_available(), reason="triton not importable")
def test_style_stats_triton_and_reference_agree():
    x = latents(2, 16, 16, 16).requires_grad_(True)
    ref = latents(2, 16, 16, 16)
    l_t = style_loss(x, ref, backend="triton")
    (g_t,) = torch.autograd.grad(l_t, x)
    l_r = style_loss(x, ref, backend="torch")
    (g_r,) = torch.autograd.grad(l_r, x)
    torch.testing.assert_close(l_t, l_r, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g_t, g_r, atol=1e-7, rtol=1e-4)
    mu, sd = calc_mean_std(x.detach(), backend="triton")
    mu_r, sd_r = ref_mean_std(x.detach())
    torch.testing.assert_close(mu, mu_r, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sd, sd_r, atol=1e-6, rtol=1e-5)


def test_style_loss_rejects_a_target_with_grad():
    with pytest.raises(ValueError, match="quant_ref"):
        style_loss(latents(), latents().requires_grad_(True))


def make_loss(**kw):
    args = {"disc_start": 0, "disc_num_layers": 0, "disc_in_channels": 8, "disc_ndf": 8, "disc_factor": 0.8,
                "style_weight": 10.0, "backend": "torch"}
    args.update(kw)
    return Stage2Loss(**args)


@pytest.mark.parametrize("step,disc_start", [(0, 0), (3, 5), (7, 5)])
def test_generator_terms_and_keys(step, disc_start):
    loss = make_loss(disc_start=disc_start, reverse_weight=0.7, codebook1_weight=1.3, disc_weight=0.9)
    quant_y = latents(h=8, w=8).requires_grad_(True)
    quant_x, quant_ref = latents(h=8, w=8), latents(h=8, w=8)
    diff = torch.tensor(0.37)
    total, aeloss, log = loss(diff, quant_ref, quant_y, quant_x, optimizer_idx=0, global_step=step)
    assert {k.split("/", 1)[1] for k in log} == G_KEYS
    assert all(v.dim() == 0 and not v.requires_grad for v in log.values())
    rev = F.mse_loss(quant_y, quant_x)
    sty = ref_style_loss(quant_y.double(), quant_ref.double()).float()
    g = -loss.discriminator(quant_y).mean()
    f = 0.8 if step >= disc_start else 0.0
    exp_ae = 0.7 * rev + 1.3 * 0.37 + 10.0 * sty
    torch.testing.assert_close(aeloss, exp_ae, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(total, exp_ae + 0.9 * f * g, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(log["train/reverse_loss"], rev.detach())
    torch.testing.assert_close(log["train/style_loss"], sty.detach(), atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(log["train/quant_x2y_loss"], diff)
    assert float(log["train/d_weight"]) == pytest.approx(0.9)
    assert float(log["train/disc_factor"]) == pytest.approx(f)
    torch.testing.assert_close(log["train/g_loss"], g.detach())


@pytest.mark.parametrize("kind", ["hinge", "vanilla"])
@pytest.mark.parametrize("step,g_step,expect_factor", [(0, 1, 0.8), (3, 2, 0.0), (4, 2, 0.8), (1, 1, 0.8)])
def test_discriminator_terms(kind, step, g_step, expect_factor):
    loss = make_loss(disc_loss=kind, G_step=g_step)
    quant_ref, quant_y = latents(h=8, w=8), latents(h=8, w=8).requires_grad_(True)
    d_loss, log = loss(None, quant_ref, quant_y, None, optimizer_idx=1, global_step=step)
    assert {k.split("/", 1)[1] for k in log} == D_KEYS
    real, fake = loss.discriminator(quant_ref), loss.discriminator(quant_y.detach())
    if kind == "hinge":
        expect = 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
    else:
        expect = 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    torch.testing.assert_close(d_loss, expect_factor * expect, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(log["train/logits_real"], real.mean().detach())
    torch.testing.assert_close(log["train/logits_fake"], fake.mean().detach())
    d_loss.backward()
    assert quant_y.grad is None  # D phase never reaches the generator


def test_identity_term_code_default_and_seed_option():
    quant_y, quant_x, quant_ref = latents(), latents(), latents()
    ident, diff_id = latents(), torch.tensor(0.2)
    l_id = F.mse_loss(ident, quant_ref)
    code = make_loss(reverse_weight=0.5, codebook1_weight=2.0)
    base = code(torch.tensor(0.0), quant_ref, quant_y, quant_x)[1]
    with_id = code(torch.tensor(0.0), quant_ref, quant_y, quant_x, diff_identity=diff_id, quant_identity=ident)
    torch.testing.assert_close(with_id[1] - base, 0.5 * l_id + 2.0 * 0.2, atol=1e-5, rtol=1e-5)
    assert "train/identity_loss" in with_id[2] and "train/diff_identity" in with_id[2]
    seed = make_loss(reverse_weight=0.5, codebook1_weight=2.0, identity_weight=3.0)
    seed.discriminator.load_state_dict(code.discriminator.state_dict())
    with_id_seed = seed(torch.tensor(0.0), quant_ref, quant_y, quant_x, diff_identity=diff_id, quant_identity=ident)
    torch.testing.assert_close(with_id_seed[1] - base, 3.0 * l_id + 2.0 * 0.2, atol=1e-5, rtol=1e-5)


def test_adaptive_weight_option_uses_the_given_last_layer():
    conv = torch.nn.Conv2d(8, 8, 1)
    x = latents(h=8, w=8)
    quant_y = conv(x)
    loss = make_loss(adaptive_disc_weight=True, disc_weight=0.5)
    _, aeloss, log = loss(torch.tensor(0.0), latents(h=8, w=8), quant_y, latents(h=8, w=8), last_layer=conv.weight)
    g = -loss.discriminator(quant_y).mean()
    gn = torch.autograd.grad(aeloss, conv.weight, retain_graph=True)[0].norm()
    gg = torch.autograd.grad(g, conv.weight, retain_graph=True)[0].norm()
    torch.testing.assert_close(log["train/d_weight"], (gn / (gg + 1e-4)).clamp(0, 1e4) * 0.5, rtol=1e-4, atol=1e-6)
    default = make_loss(disc_weight=0.5)
    assert float(default(torch.tensor(0.0), latents(), latents(), latents(), last_layer=conv.weight)[2]
                 ["train/d_weight"]) == 0.5


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="disc_loss='wgan'"):
        make_loss(disc_loss="wgan")
    with pytest.raises(ValueError, match="G_step=0"):
        make_loss(G_step=0)
    with pytest.raises(ValueError, match="optimizer_idx=2"):
        make_loss()(torch.tensor(0.0), latents(), latents(), latents(), optimizer_idx=2)
