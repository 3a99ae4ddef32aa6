"""Latent shards, loaders (Rust and torch fallback), reference pool, config loading, plot and encode tools."""
import json
from types import SimpleNamespace

import pytest
import torch
from sg_helpers import tiny_config

from vqfast.data.latents import (
    LatentDataError,
    ReferencePool,
    build_latent_loader,
    domain_statistics,
    list_shards,
    make_latent_shards,
)
from vqfast.errors import ConfigError
from vqfast.loaders.latents import TorchLatentShardLoader
from vqfast.train import load_config
from vqfast.train.config import build
from vqfast.train.families.stargan.config import StarGANConfig


def test_generated_shards_have_distinguishable_domain_statistics(tmp_path):
    paths = make_latent_shards(tmp_path, num_domains=3, per_domain=40, shards_per_domain=2, resolution=16, seed=4)
    assert len(paths) == 6
    obj = torch.load(paths[0], weights_only=True)
    assert obj["latents"].dtype == torch.float32 and obj["latents"].shape[1:] == (4, 16, 16)
    assert obj["labels"].dtype == torch.int64
    lat = torch.cat([torch.load(p, weights_only=True)["latents"] for p in paths])
    lab = torch.cat([torch.load(p, weights_only=True)["labels"] for p in paths])
    means, stds = domain_statistics(3, 4, 4)
    for d in range(3):
        x = lat[lab == d]
        assert x.shape[0] == 40
        assert torch.allclose(x.mean(dim=(0, 2, 3)), means[d], atol=0.25 * stds[d].mean())
        assert torch.allclose(x.std(dim=(0, 2, 3)), stds[d], rtol=0.25)
    assert ((means[0] - means[2]).abs() > stds.mean()).all()          # extremes: > one latent std apart per channel
    assert not torch.allclose(stds[0], stds[1])                         # neighbours also differ in spread


def test_rust_and_torch_loaders_cover_every_sample_once(tmp_path):
    pytest.importorskip("vqfast.io")
    paths = make_latent_shards(tmp_path, num_domains=2, per_domain=10, shards_per_domain=2, resolution=8)
    for kind in ("rust", "torch"):
        loader = build_latent_loader([str(p) for p in paths], loader=kind, batch_size=4, seed=1, drop_last=False)
        loader.set_epoch(2)
        ids = torch.cat([b["index"] for b in loader])
        assert sorted(ids.tolist()) == list(range(20)), kind
        batch = next(iter(loader))
        assert set(batch) == {"latents", "labels", "index"}


def test_torch_loader_ranks_and_errors(tmp_path):
    paths = make_latent_shards(tmp_path, num_domains=2, per_domain=9, shards_per_domain=1, resolution=8)
    parts = [TorchLatentShardLoader(paths, label_key="labels", batch_size=2, rank=r, world_size=2) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == 4
    seen = [set(torch.cat([b["index"] for b in p]).tolist()) for p in parts]
    assert not seen[0] & seen[1]
    with pytest.raises(LatentDataError, match="no key 'lbl'"):
        TorchLatentShardLoader(paths, label_key="lbl", batch_size=2)
    with pytest.raises(LatentDataError, match="no latent shards"):
        list_shards(tmp_path / "missing")
    with pytest.raises(LatentDataError, match="loader"):
        build_latent_loader(paths, loader="fast", batch_size=2)


def test_reference_pool_draws_from_target_domain(tmp_path):
    paths = make_latent_shards(tmp_path, num_domains=3, per_domain=8, shards_per_domain=1, resolution=8)
    means = domain_statistics(3, 4, 0)[0]
    pool = ReferencePool(TorchLatentShardLoader(paths, label_key="labels", batch_size=4), 3, capacity=5, seed=0)
    y = torch.tensor([2, 0, 1, 2, 0, 1])
    refs = pool.draw(y)
    assert refs.shape == (6, 4, 8, 8)
    got = refs.mean(dim=(2, 3))                                            # (6, C)
    nearest = torch.cdist(got, means).argmin(dim=1)
    assert nearest.tolist() == y.tolist()
    assert max(pool.counts) <= 5
    with pytest.raises(LatentDataError, match="domain"):
        ReferencePool(TorchLatentShardLoader(paths, label_key="labels", batch_size=4), 2, 5).draw(torch.tensor([0]))


def test_config_rejects_unknown_keys_naming_them(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'loss\.w_style'.*did you mean 'loss\.w_sty'"):
        tiny_config(loss={"w_style": 1.0})
    with pytest.raises(ConfigError, match=r"unknown key 'checkpoint'"):
        build(StarGANConfig, {"model": {"type": "stargan_v2_latent"}, "data": {"synthetic": True}, "checkpoint": {}},
              "f.yaml")
    with pytest.raises(ConfigError, match="gan_loss"):
        tiny_config(loss={"gan_loss": "wgan"})
    with pytest.raises(ConfigError, match="r1_interval"):
        tiny_config(loss={"r1_interval": 0})
    with pytest.raises(ConfigError, match="num_domains"):
        tiny_config(data={"domains": ["a", "b", "c"]})


def test_shipped_config_loads_with_seed_keys():
    cfg = load_config("stargan_v2_latent", ["train.max_steps=2", "train.device=cpu"])
    assert cfg.train.max_steps == 2 and cfg.data.root is None
    assert cfg.training.latent_scale == pytest.approx(0.18215)
    assert (cfg.loss.w_adv, cfg.loss.w_sty, cfg.loss.w_cyc, cfg.loss.w_id, cfg.loss.w_ds) == (1, 1, 1, 0, 1)
    assert (cfg.loss.ds_decay_epochs, cfg.loss.w_r1, cfg.loss.r1_interval, cfg.loss.ds_margin) == (20, 10, 16, None)
    assert cfg.model.base_dim == 64                                         # cpu_overrides applied on CPU
    with pytest.raises(ConfigError, match="train.batch_sz"):
        load_config("stargan_v2_latent", ["train.batch_sz=2"])


def test_plot_draws_every_logged_scalar_with_matplotlib(tmp_path):
    from PIL import Image

    from vqfast.plot import PlotError, collect_series, main, plot_run

    rows = [{"epoch": e, "step": 10 * e, "d_loss": 2.0 - 0.1 * e, "g_loss": 3.0 / (e + 1), "r1": 0.01,
             "samples_per_s": 100.0, "partial": False} for e in range(5)]
    (tmp_path / "epochs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert set(collect_series(rows, None, "epoch")) == {"d_loss", "g_loss", "r1"}  # throughput left out
    out = plot_run(tmp_path)
    with Image.open(out) as im:
        assert out == tmp_path / "epochs_curves.png" and im.size == (1200, 280)  # 3 panels, 100 dpi
    assert main([str(tmp_path), "--keys", "d_loss", "--out", str(tmp_path / "d.png")]) == 0
    with Image.open(tmp_path / "d.png") as im:
        assert im.size == (400, 280)
    with pytest.raises(PlotError, match="not found"):
        plot_run(tmp_path, keys=["nope"])
    assert main([str(tmp_path / "none")]) == 2


class _StubVAE(torch.nn.Module):
    """Mimics diffusers AutoencoderKL.encode(x).latent_dist (mean / sample) with a fixed 8× average pool."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def encode(self, x):
        z = torch.nn.functional.avg_pool2d(x, 8)[:, :3]
        z = torch.cat([z, z[:, :1]], 1) * self.w                          # (B, 4, H/8, W/8)
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=z, sample=lambda generator=None: z))


def test_encode_latents_folders_to_shards(tmp_path):
    from PIL import Image

    from vqfast.tools.encode_latents import EncodeError, encode_folders, find_domains, main

    for name, color in (("photo", (250, 10, 10)), ("monet", (10, 10, 250))):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), color).save(tmp_path / "imgs" / name / f"{i}.png")
    domains = find_domains(str(tmp_path / "imgs"), [])
    assert [n for n, _ in domains] == ["monet", "photo"]
    shards = encode_folders(_StubVAE(), domains, tmp_path / "out", size=16, batch_size=2, shard_size=4)
    assert len(shards) == 2
    obj = torch.load(shards[0], weights_only=True)
    assert obj["latents"].shape[1:] == (4, 2, 2) and obj["labels"].dtype == torch.int64
    meta = json.loads((tmp_path / "out" / "domains.json").read_text())
    assert meta["domains"] == ["monet", "photo"] and meta["counts"] == {"monet": 3, "photo": 3}
    with pytest.raises(EncodeError, match="multiple of 8"):
        encode_folders(_StubVAE(), domains, tmp_path / "o2", size=12)
    # a missing VAE / diffusers is a clear error naming what to install, exit code 2
    assert main(["--vae", str(tmp_path / "no_vae"), "--out", str(tmp_path / "o3"), str(tmp_path / "imgs")]) == 2


def test_labels_out_of_range_fail_before_training_naming_the_shard(tmp_path):
    import torch

    from vqfast.data.latents import LatentDataError, check_labels, list_shards, make_latent_shards

    root = tmp_path / "shards"
    make_latent_shards(root, num_domains=2, per_domain=8, shards_per_domain=1, resolution=8)
    paths = list_shards(root)
    check_labels(paths, "labels", 2)                               # generated data is valid
    bad = torch.load(paths[1], weights_only=True)
    bad["labels"][3] = 5
    torch.save(bad, paths[1])
    with pytest.raises(LatentDataError, match=r"holds 5, outside \[0, 1\]") as info:
        check_labels(paths, "labels", 2)
    assert str(paths[1]) in str(info.value)
    with pytest.raises(LatentDataError, match="no 'domain'"):
        check_labels(paths, "domain", 2)
