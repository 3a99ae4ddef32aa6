"""DinoVQ codebook: k-means init on the first training batch, usage / dead-code metrics, restarts."""
import torch
from dvq_helpers import tiny_model


def test_kmeans_init_on_first_batch(batch):
    imgs, _feats = batch
    model = tiny_model(kmeans_init=True, codebook_size=8, codebook_dim=6)
    before = model.quantize.embedding.weight.clone()
    assert not bool(model.quantize.initted)
    model.eval()(imgs)  # eval forwards never initialise
    assert not bool(model.quantize.initted)
    model.train()
    with torch.no_grad():
        z_c = model.proj_in(model.encoder(imgs)).reshape(-1, 6)  # (N, Dc) before the update
    model(imgs)
    assert bool(model.quantize.initted)
    codebook = model.quantize.embedding.weight
    assert not torch.equal(codebook, before)
    # every k-means centroid (before the first EMA step moved it) lies in the convex hull of the batch:
    # its distance to the nearest batch vector is small compared with the N(0, 1) init's
    d_new = torch.cdist(codebook, z_c).min(dim=1).values.mean()
    d_old = torch.cdist(before, z_c).min(dim=1).values.mean()
    assert d_new < 0.5 * d_old


def test_usage_and_dead_code_metrics(batch):
    imgs, feats = batch
    model = tiny_model(kmeans_init=False, codebook_size=64, dead_code_steps=2, restart_dead_codes=False,
                       dead_code_rule="steps").train()
    for _ in range(3):
        model.compute_loss(imgs[:1], feats[:1])  # 16 tokens per step: most of the 64 codes stay unused
    m = model.quantize.codebook_metrics()
    assert set(m) >= {"perplexity", "usage_perplexity", "active_codes", "dead_codes", "restarted_codes"}
    assert all(v.dim() == 0 for v in m.values())
    assert 1 <= int(m["active_codes"]) <= 16
    expected_dead = int((model.quantize.steps_unused >= 2).sum())
    assert int(m["dead_codes"]) == expected_dead >= 64 - 3 * 16
    assert int(m["restarted_codes"]) == 0
    assert 1.0 <= float(m["perplexity"]) <= 16.0


def test_dead_codes_are_restarted(batch):
    imgs, feats = batch
    model = tiny_model(kmeans_init=False, codebook_size=64, dead_code_steps=2, restart_dead_codes=True,
                       dead_code_rule="steps").train()
    for _ in range(3):
        model.compute_loss(imgs[:1], feats[:1])
    assert int(model.quantize.codebook_metrics()["restarted_codes"]) > 0
