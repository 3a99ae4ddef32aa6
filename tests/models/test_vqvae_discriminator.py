"""VQVAE2 / VqVae adapter contract and shapes; NLayerDiscriminator topology and init."""
import pytest
import torch

from vqfast.models import VQVAE2, ActNorm, NLayerDiscriminator, VqVae


@pytest.mark.parametrize("levels,rates,bottom", [(2, [4, 2], 8), (3, [2, 2, 2], 16), (1, [4], 8)])
def test_vqvae2_contract(levels, rates, bottom):
    model = VQVAE2(hidden_channels=16, res_channels=8, embed_dim=4, nb_entries=16, nb_levels=levels,
                   scaling_rates=rates)
    x = torch.randn(2, 3, 32, 32)
    recon, diffs, enc, dec, ids = model(x)
    assert recon.shape == x.shape and len(diffs) == len(ids) == levels
    vq_loss, recon2, ppl, idx = model.vq_forward(x)
    assert vq_loss.dim() == 0 and ppl.dim() == 0 and idx.shape == (2, bottom, bottom)
    vq_loss.backward()  # commitment gradient reaches the encoder
    assert model.encoders[0].layers[0].weight.grad is not None
    assert all(not b.requires_grad for q in model.quantizers for b in q.buffers())


def test_vqvae2_bad_rates():
    with pytest.raises(ValueError, match="scaling_rates"):
        VQVAE2(nb_levels=2, scaling_rates=[4])
    with pytest.raises(ValueError, match="powers of two"):
        VQVAE2(nb_levels=1, scaling_rates=[3])


@pytest.mark.parametrize("decay", [0.99, 0.0])
def test_vqvae_contract(decay):
    model = VqVae(vocab_size=32, n_init=8, ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[],
                  resolution=16, decay=decay)
    x = torch.randn(2, 3, 16, 16)
    vq_loss, recon, ppl, idx = model(x)
    assert recon.shape == x.shape and idx.shape == (2, 8, 8) and vq_loss.dim() == 0


def test_patchgan_shapes_and_init():
    torch.manual_seed(0)
    d = NLayerDiscriminator(3, 64, 3)
    assert d(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.bias is not None for c in convs] == [True, False, False, False, True]
    assert abs(convs[2].weight.std().item() - 0.02) < 0.002
    bns = [m for m in d.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(b.bias, torch.zeros_like(b.bias)) for b in bns)
    assert abs(bns[-1].weight.mean().item() - 1.0) < 0.01
    assert NLayerDiscriminator(256, 64, 0)(torch.randn(1, 256, 16, 16)).shape == (1, 1, 6, 6)
    assert "main.2.weight" in d.state_dict()


def test_actnorm_data_dependent_init():
    norm = ActNorm(4)
    x = torch.randn(8, 4, 5, 5) * 3 + 2
    y = norm(x)
    assert int(norm.initialized) == 1
    flat = y.transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(1), torch.ones(4), atol=1e-4, rtol=0)
    loc = norm.loc.clone()
    norm(x * 10)
    assert torch.equal(loc, norm.loc)  # initialised once
    d = NLayerDiscriminator(3, 8, 2, use_actnorm=True)
    assert all(c.bias is not None for c in d.modules() if isinstance(c, torch.nn.Conv2d))
