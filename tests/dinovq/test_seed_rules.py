"""Seed-004 rules: one optimizer factory for G and D, the EMA-count dead-code rule, the orthogonal regulariser,
DINOv3 RoPE coordinate augmentation and the one-pass adaptive weight (SPEC §7.5)."""
import math

import pytest
import torch
import torch.nn.functional as F
from dvq_helpers import tiny_model

from vqfast.models.dinovq import orthogonal_loss
from vqfast.models.vit import Rope2D
from vqfast.train.config import build
from vqfast.train.families.dinovq.config import DinoVQConfig
from vqfast.train.families.dinovq.task import get_optimizer

# ---- one optimizer factory ----------------------------------------------------------------------------------

def test_get_optimizer_is_lucidrains_form():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    adam = get_optimizer(net.parameters(), 1e-4, 0.0, (0.9, 0.99))
    assert type(adam) is torch.optim.Adam and adam.defaults["betas"] == (0.9, 0.99) and adam.defaults["eps"] == 1e-8
    adamw = get_optimizer(net.parameters(), 1e-4, 0.01, (0.9, 0.99))
    assert type(adamw) is torch.optim.AdamW
    decayed, plain = adamw.param_groups
    assert [p.ndim for p in decayed["params"]] == [2] and decayed["weight_decay"] == 0.01
    assert sorted(p.ndim for p in plain["params"]) == [1, 1, 1] and plain["weight_decay"] == 0.0
    flat = get_optimizer(net.parameters(), 1e-4, 0.01, (0.9, 0.99), group_wd_params=False)
    assert len(flat.param_groups) == 1


def _cfg(**train):
    return build(DinoVQConfig, {"model": {"use_gan": True}, "data": {"synthetic": True, "kind": "images",
                                                                    "size": 224}, "train": train}, "x.yaml")


def test_discriminator_optimizer_follows_the_generator_settings():
    cfg = _cfg()
    assert cfg.train.betas == [0.9, 0.99] and cfg.train.disc_betas == [0.9, 0.99]
    assert _cfg(betas=[0.5, 0.9]).train.disc_betas == [0.5, 0.9]     # one factory: same settings for D
    assert _cfg(disc_betas=[0.0, 0.99]).train.disc_betas == [0.0, 0.99]  # an explicit choice is honoured


# ---- dead codes: EMA count below the threshold ---------------------------------------------------------------

def test_ema_dead_code_rule_replaces_codes_below_threshold(batch):
    imgs, feats = batch
    ref = tiny_model(kmeans_init=False, codebook_size=64, restart_dead_codes=False).train()
    model = tiny_model(kmeans_init=False, codebook_size=64).train()          # rule "ema", threshold 1 (seed)
    assert torch.equal(model.quantize.embedding.cluster_size, torch.ones(64))
    torch.manual_seed(5)
    out = model(imgs[:1])
    torch.manual_seed(5)
    ref_out = ref(imgs[:1])
    used = torch.zeros(64, dtype=torch.bool).index_fill_(0, ref_out["indices"].reshape(-1), True)
    c_ref = ref.quantize.embedding.cluster_size
    dead = c_ref < 1.0
    assert torch.equal(dead, ~used)                          # 0.99·1 + 0.01·n >= 1 exactly when used
    q, r = model.quantize.embedding, ref.quantize.embedding
    assert torch.equal(q.weight[used], r.weight[used]) and torch.equal(q.cluster_size[used], c_ref[used])
    assert torch.equal(q.cluster_size[dead], torch.ones(int(dead.sum())))
    torch.testing.assert_close(q.embed_avg[dead], q.weight[dead])
    tokens = model.proj_in(model.encoder(imgs[:1])).reshape(-1, 32)
    for row in q.weight[dead]:                               # every replacement is a token of the batch
        assert torch.isclose(tokens, row[None], atol=1e-5).all(-1).any()
    assert int(model.quantize.restarted_codes) == int(dead.sum()) > 0
    assert int(model.quantize.codebook_metrics()["dead_codes"]) == int(dead.sum())
    assert out["indices"].shape == ref_out["indices"].shape


def test_steps_rule_is_the_option(batch):
    imgs, _ = batch
    model = tiny_model(kmeans_init=False, codebook_size=64, dead_code_rule="steps", dead_code_steps=3).train()
    model(imgs[:1])
    assert int(model.quantize.restarted_codes) == 0          # nothing unused for 3 steps yet


# ---- orthogonal regulariser -----------------------------------------------------------------------------------

def _orth_ref(codebook):
    """lucidrains orthogonal_loss_fn on one head."""
    n = codebook.shape[0]
    normed = F.normalize(codebook, dim=-1)
    return (normed @ normed.t()).square().sum() / n ** 2 - 1 / n


@pytest.mark.parametrize("k", [1, 7, 33])
def test_orthogonal_loss_matches_reference(k):
    g = torch.Generator().manual_seed(k)
    W = torch.randn(k, 5, generator=g)
    idx = torch.randint(0, k, (50,), generator=g)
    torch.testing.assert_close(orthogonal_loss(W, idx, active_only=False, max_codes=None), _orth_ref(W))
    torch.testing.assert_close(orthogonal_loss(W, idx, active_only=True, max_codes=None), _orth_ref(W[idx.unique()]))
    sampled = orthogonal_loss(W, idx, active_only=True, max_codes=2)  # 2 random active codes
    assert torch.isfinite(sampled) and -0.5 - 1e-6 <= float(sampled) <= 0.5 + 1e-6


def test_orthogonal_term_enters_the_training_vq_loss_only(batch):
    imgs, _ = batch
    plain = tiny_model(orthogonal_reg_weight=0.0).train()
    reg = tiny_model(orthogonal_reg_weight=0.5, orthogonal_reg_max_codes=None).train()
    torch.manual_seed(0)
    a = plain.encode(imgs)
    torch.manual_seed(0)
    b = reg.encode(imgs)
    want = 0.5 * orthogonal_loss(reg.quantize.embedding.weight, b["indices"].reshape(-1), True, None)
    torch.testing.assert_close(b["vq_loss"] - a["vq_loss"], want)
    reg.eval()
    plain.eval()
    torch.testing.assert_close(reg.encode(imgs)["vq_loss"], plain.encode(imgs)["vq_loss"])


# ---- RoPE coordinate augmentation ------------------------------------------------------------------------------

@pytest.mark.parametrize("aug", [{"rescale_coords": 2.0}, {"shift_coords": 0.5}, {"jitter_coords": 1.5},
                                 {"shift_coords": 0.1, "jitter_coords": 1.2, "rescale_coords": 2.0}])
def test_rope_augmentation_as_dinov3(aug):
    rope = Rope2D(8, 100.0, **aug)
    coords = Rope2D.grid_coords(3, 5, "cpu")
    plain = rope.eval()(3, 5, torch.device("cpu"))
    torch.testing.assert_close(plain, rope.tables(coords))
    rope.train()
    torch.manual_seed(11)
    got = rope(3, 5, torch.device("cpu"))
    torch.manual_seed(11)                                    # DINOv3's draws, in its order
    want = coords.clone()
    if "shift_coords" in aug:
        want = want + torch.empty(2).uniform_(-aug["shift_coords"], aug["shift_coords"])[None, :]
    if "jitter_coords" in aug:
        j = math.log(aug["jitter_coords"])
        want = want * torch.empty(2).uniform_(-j, j).exp()[None, :]
    if "rescale_coords" in aug:
        r = math.log(aug["rescale_coords"])
        want = want * torch.empty(1).uniform_(-r, r).exp()
    torch.testing.assert_close(got, rope.tables(want))
    assert not torch.allclose(got[0], plain[0])


def test_encoder_uses_the_seed_rescale_in_training_only(batch):
    imgs, _ = batch
    model = tiny_model()
    assert model.encoder.trunk.rope.rescale_coords == 2.0
    assert model.dino_decoder.transformer.rope.rescale_coords is None
    model.eval()
    torch.testing.assert_close(model.encoder(imgs), model.encoder(imgs))


# ---- one-pass adaptive weight --------------------------------------------------------------------------------

@pytest.mark.parametrize("perceptual", [False, True])
def test_one_pass_adaptive_weight_equals_the_reference(batch, perceptual):
    imgs, feats = batch
    extra = {"use_perceptual": True, "perceptual_backbone": "random", "perceptual_weight": 0.3} if perceptual else {}
    results = []
    for fast in (True, False):
        model = tiny_model(use_gan=True, disc_start=0, disc_weight=0.5, disc_adaptive_weight=True,
                           recon_loss_weight=0.7, fast_adaptive_weight=fast, **extra).eval()
        model.discriminator.requires_grad_(False)            # the task's G step: D frozen
        passes = []
        model.discriminator.register_full_backward_hook(lambda *a, passes=passes: passes.append(1))
        losses = model.compute_loss(imgs[:2], feats[:2], "generator", 3)
        losses["total_loss"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((losses, grads, len(passes)))
    (fast, g_fast, n_fast), (ref, g_ref, n_ref) = results
    assert n_fast == 1 and n_ref == 2                        # D traversed backwards once instead of twice
    for key in fast:
        torch.testing.assert_close(fast[key].detach(), ref[key].detach(), rtol=1e-5, atol=1e-6)
    assert g_fast.keys() == g_ref.keys() and len(g_fast) > 10
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_dead_code_key_of_the_other_rule_is_refused():
    import pytest

    from vqfast.errors import ConfigError
    from vqfast.train import load_config

    with pytest.raises(ConfigError, match="model.dead_code_steps is not read with model.dead_code_rule=ema"):
        load_config("dinovq", ["model.dead_code_steps=50"])
    with pytest.raises(ConfigError, match="model.threshold_ema_dead_code is not read"):
        load_config("dinovq", ["model.dead_code_rule=steps"])  # the shipped file sets the ema threshold
    cfg = load_config("dinovq", ["model.dead_code_rule=steps", "model.threshold_ema_dead_code=null",
                                 "model.dead_code_steps=7"])
    assert cfg.model.network_kwargs()["dead_code_steps"] == 7
