"""SPEC §7.5 fast path of the adaptive GAN weight: same loss value, same λ and the same gradients on every
generator parameter as taming's path, with LPIPS and D back-propagated once instead of twice."""
import pytest
import torch
from torch import nn

from vqfast.losses import VQLPIPSWithDiscriminator


class TinyDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(4, 8, 3, padding=1)
        self.conv_out = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, z):
        return self.conv_out(torch.relu(self.conv_in(z)))             # (B, 3, H, W)


def run(fast: bool, step: int, perceptual_weight: float):
    torch.manual_seed(0)
    dec = TinyDecoder()
    loss_fn = VQLPIPSWithDiscriminator(disc_start=2, disc_in_channels=3, disc_ndf=8, disc_num_layers=1,
                                       perceptual_weight=perceptual_weight, perceptual_backbone="random",
                                       disc_weight=0.8, fast_adaptive_weight=fast)
    loss_fn.discriminator.requires_grad_(False)                      # the G step freezes D
    z = torch.randn(2, 4, 16, 16)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    codebook_loss = (z.square().mean() * 0.1).requires_grad_()
    recon = dec(z)
    loss, log = loss_fn.generator_loss(codebook_loss, x, recon, step, last_layer=dec.conv_out.weight)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in dec.named_parameters()}
    return loss.detach(), log, grads, codebook_loss.grad


@pytest.mark.parametrize("step", [0, 5], ids=["before_disc_start", "after_disc_start"])
@pytest.mark.parametrize("perceptual_weight", [1.0, 0.0])
def test_fast_path_matches_taming_path(step, perceptual_weight):
    ref_loss, ref_log, ref_grads, ref_cb = run(False, step, perceptual_weight)
    loss, log, grads, cb = run(True, step, perceptual_weight)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-7)
    for key in ("train/d_weight", "train/total_loss", "train/nll_loss", "train/g_loss"):
        torch.testing.assert_close(log[key], ref_log[key], rtol=1e-5, atol=1e-7, msg=key)
    assert float(log["train/d_weight"]) > 0
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    torch.testing.assert_close(cb, ref_cb)


def test_fast_path_falls_back_when_d_is_trainable():
    """With D parameters requiring grad the G loss must still reach them: the taming path is used."""
    torch.manual_seed(0)
    dec = TinyDecoder()
    loss_fn = VQLPIPSWithDiscriminator(disc_start=0, disc_in_channels=3, disc_ndf=8, disc_num_layers=1,
                                       perceptual_weight=0.0, fast_adaptive_weight=True)
    recon = dec(torch.randn(2, 4, 16, 16))
    loss, _ = loss_fn.generator_loss(torch.zeros(()), torch.zeros(2, 3, 16, 16), recon, 1,
                                     last_layer=dec.conv_out.weight)
    loss.backward()
    assert any(p.grad is not None for p in loss_fn.discriminator.parameters())
