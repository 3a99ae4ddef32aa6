"""Latent StarGAN networks: shapes (32², 64²), AdaIN on channel_stats, per-domain heads, EMA, init options."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from vqfast.errors import InputError
from vqfast.models.stargan import AdaIN, Discriminator, LatentStarGAN, MappingNetwork, StyleEncoder, ema_update_


def _nets(**kw):
    torch.manual_seed(0)
    args = dict(base_dim=32, n_res_blocks=1, mapping_hidden_dim=32, d_dim=16, num_domains=3, backend="torch")
    args.update(kw)
    return LatentStarGAN(**args)


@pytest.mark.parametrize("size, patch", [(32, 8), (64, 16)])
def test_shapes(size, patch):
    n = _nets()
    x, y = torch.randn(2, 4, size, size), torch.tensor([0, 2])
    s = n.style_encoder(x, y)
    assert s.shape == (2, 64)
    assert n.mapping(torch.randn(2, 16), y).shape == (2, 64)
    assert n.generator(x, s).shape == (2, 4, size, size)
    assert n.discriminator(x, y).shape == (2, 1, patch, patch)


def test_adain_zero_init_is_instance_norm_and_matches_formula():
    torch.manual_seed(1)
    ada = AdaIN(8, 6, backend="torch")
    x, s = torch.randn(3, 6, 5, 7) * 3 + 2, torch.randn(3, 8)
    assert_close(ada(x, s), F.instance_norm(x, eps=1e-5), atol=1e-5, rtol=1e-5)
    torch.nn.init.normal_(ada.fc.weight)
    gamma, beta = ada.fc(s).chunk(2, 1)
    expect = (1 + gamma[:, :, None, None]) * F.instance_norm(x, eps=1e-5) + beta[:, :, None, None]
    assert_close(ada(x, s), expect, atol=1e-5, rtol=1e-5)


def test_generator_ignores_style_at_init_and_uses_it_after():
    n = _nets()
    x = torch.randn(2, 4, 16, 16)
    s1, s2 = torch.randn(2, 64), torch.randn(2, 64)
    assert_close(n.generator(x, s1), n.generator(x, s2))       # zero-init AdaIN fc: style has no effect yet
    for block in n.generator.blocks:
        torch.nn.init.normal_(block.norm1.fc.weight, std=0.1)
    assert not torch.allclose(n.generator(x, s1), n.generator(x, s2))


def test_domain_heads_are_gathered_per_sample():
    torch.manual_seed(2)
    f = MappingNetwork(8, 4, num_domains=3, hidden_dim=16)
    e = StyleEncoder(4, 4, num_domains=3, base_dim=16)
    d = Discriminator(4, num_domains=3, base_dim=32, d_dim=8)
    z, x = torch.randn(3, 8), torch.randn(3, 4, 16, 16)
    y = torch.tensor([2, 0, 1])
    for net, inp in ((f, z), (e, x), (d, x)):
        together = net(inp, y)
        for b in range(3):
            alone = net(inp[b:b + 1], y[b:b + 1])
            assert_close(together[b:b + 1], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(f(z, torch.zeros(3, dtype=torch.long)), f(z, torch.ones(3, dtype=torch.long)))


def test_label_and_shape_errors():
    n = _nets()
    with pytest.raises(InputError, match="labels"):
        n.mapping(torch.randn(2, 16), torch.tensor([0.0, 1.0]))
    with pytest.raises(InputError, match="shape"):
        n.style_encoder(torch.randn(2, 4, 16, 16), torch.tensor([0]))
    with pytest.raises(InputError):
        n.generator(torch.randn(2, 3, 16, 16), torch.randn(2, 64))
    with pytest.raises(InputError, match="num_domains"):
        LatentStarGAN(num_domains=1)
    with pytest.raises(InputError, match="init"):
        LatentStarGAN(init="xavier")


def test_ema_update_and_sampling_nets():
    n = _nets(ema=True)
    assert n.has_ema and not any(p.requires_grad for p in n.generator_ema.parameters())
    before = copy.deepcopy(n.generator_ema.state_dict())
    with torch.no_grad():
        for p in n.generator.parameters():
            p.add_(1.0)
    n.update_ema()
    for (k, old), new, cur in zip(before.items(), n.generator_ema.state_dict().values(), n.generator.state_dict().values(), strict=True):
        assert_close(new, 0.999 * old + 0.001 * cur, msg=k)
    assert n.sampling_nets()[0] is n.generator_ema
    assert _nets().sampling_nets()[0] is not None and _nets().generator_ema is None


def test_he_init_applied_after_ema_copy():
    n = _nets(ema=True, init="he")
    g, ema = n.generator.conv_in1, n.generator_ema.conv_in1
    assert not torch.allclose(g.weight, ema.weight)          # EMA kept the default init (StarGAN v2)
    assert torch.count_nonzero(g.bias) == 0
    a, b = torch.nn.Linear(1, 3, bias=False), torch.nn.Linear(1, 3, bias=False)
    expect = 0.5 * a.weight.detach() + 0.5 * b.weight.detach()
    ema_update_(a, b, 0.5)
    assert_close(a.weight.detach(), expect)
