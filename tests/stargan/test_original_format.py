"""The seed-003 project's own files through ``python -m vqfast.train``: its YAML layout, its per-domain folders of
per-file latents and its checkpoints (original key names and nesting)."""
from pathlib import Path

import pytest
import torch
import yaml
from original_project import CONFIG, OriginalNets, write_config, write_latents

from vqfast.data.latents import DomainFolderLatents, read_latent_file
from vqfast.errors import VQFastError
from vqfast.models.stargan import convert_original_state_dict
from vqfast.train import load_config
from vqfast.train.__main__ import main
from vqfast.train.families.stargan import StarGANLatentTask


@pytest.fixture
def project(tmp_path, monkeypatch):
    """cwd = a project folder (the original resolves outputs/{exp_name} against it) with latents and a config."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "pt_datasets" / "unscaled_dataset"
    latents = write_latents(data)
    return tmp_path, data, latents


def _resolved(tmp: Path) -> dict:
    return yaml.safe_load((tmp / "outputs" / "tiny_orig" / "config.yaml").read_text(encoding="utf-8"))


def test_original_yaml_trains_on_the_users_folders(project, capsys):
    tmp, data, _ = project
    cfg = write_config(tmp / "stargan_v2_latent.yaml", data)
    assert main(["--config", str(cfg)]) == 0
    resolved = _resolved(tmp)
    assert resolved["data"]["root"] == str(data) and resolved["data"]["layout"] == "domain_folders"
    assert resolved["data"]["domains"] == ["photo", "monet"]
    assert resolved["train"]["max_steps"] == 2            # num_epochs 2 × (epoch_size 4 // batch 4)
    assert resolved["train"]["ckpt_every"] == 1 and resolved["train"]["sample_every"] == 1
    assert resolved["model"]["norm"] == "instance" and resolved["model"]["d_spectral_norm"] is True
    assert resolved["model"]["d_dim"] == 16 and resolved["model"]["style_mid_dim"] == 64
    assert resolved["training"]["compile"] is True and resolved["training"]["compile_nets"] == ["G", "F", "E"]
    assert resolved["loss"]["w_id"] == 1.0 and resolved["loss"]["ds_margin"] == 1.5
    assert resolved["training"]["lr_schedule"] == "cosine" and resolved["seed"] == 42
    assert (tmp / "outputs" / "tiny_orig" / "samples" / "step_00000002.png").is_file()


@pytest.mark.parametrize("branch", ["AdaGN_with_SN", "AdaGN_no_SN"])
def test_exp_branches(project, branch):
    tmp, data, _ = project
    cfg = load_config(write_config(tmp / "c.yaml", data, model__exp_branch=branch))
    assert cfg.model.norm == "group" and cfg.model.d_spectral_norm is (branch == "AdaGN_with_SN")


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("branch", ["baseline_AdaIN", "AdaGN_with_SN", "AdaGN_no_SN"])
def test_original_checkpoint_loads_with_equal_forwards(project, branch, compiled):
    tmp, data, _ = project
    m = dict(CONFIG["model"], exp_branch=branch)
    torch.manual_seed(0)
    orig = OriginalNets(m).eval()
    path = tmp / "latest.pt"
    payload = orig.checkpoint(epoch=1, global_step=1, compiled=compiled)
    payload["opt_d"]["param_groups"][0]["weight_decay"] = 0.123  # a value only the file holds
    torch.save(payload, path)
    cfg = load_config(write_config(tmp / "c.yaml", data, model__exp_branch=branch,
                                   checkpoint__resume_path=str(path), training__num_epochs=3))
    task = StarGANLatentTask(cfg, "cpu")
    n = task.nets.eval()
    x, z = torch.randn(3, 4, 16, 16), torch.randn(3, 8)
    y = torch.tensor([0, 1, 1])
    with torch.no_grad():
        s = orig.style(x, y)
        torch.testing.assert_close(n.style_encoder(x, y), s)
        torch.testing.assert_close(n.mapping(z, y), orig.mapping(z, y))
        torch.testing.assert_close(n.generator(x, s), orig.gen(x, s), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(n.discriminator(x, y), orig.disc(x, y))
    assert task.opt_d.param_groups[0]["weight_decay"] == 0.123
    assert task.opt_g.param_groups[2]["initial_lr"] == 1e-6
    assert cfg.training.start_epoch == 2 and cfg.training.start_step == 1 and cfg.train.max_steps == 2


def test_resume_path_resumes_through_the_cli(project):
    """A checkpoint at the YAML's own resume_path: the run continues after its epoch with its weights."""
    tmp, data, _ = project
    torch.manual_seed(1)
    orig = OriginalNets(CONFIG["model"])
    ckpt_dir = tmp / "outputs" / "tiny_orig" / "ckpt"
    ckpt_dir.mkdir(parents=True)
    torch.save(orig.checkpoint(epoch=2, global_step=2), ckpt_dir / "latest.pt")
    # LR 0 everywhere: the one remaining step leaves the weights as loaded
    cfg = write_config(tmp / "stargan_v2_latent.yaml", data, training__num_epochs=3, training__lr_g=0.0,
                       training__lr_d=0.0, training__lr_mapping=0.0)
    assert main(["--config", str(cfg)]) == 0                  # epochs 1..2 done: epoch 3 left (1 step)
    resolved = _resolved(tmp)
    assert resolved["training"]["init_from"] == "outputs/tiny_orig/ckpt/latest.pt"
    assert resolved["training"]["start_epoch"] == 3 and resolved["training"]["start_step"] == 2
    assert resolved["train"]["max_steps"] == 1
    last = torch.load(tmp / "outputs" / "tiny_orig" / "checkpoints" / "last.pt", weights_only=True)
    want = convert_original_state_dict("G", orig.G.state_dict())
    for key, value in last["modules"]["G"].items():
        torch.testing.assert_close(value, want[key])


@pytest.mark.parametrize("change, needle", [
    ({"training__foo": 1}, "training.foo"),
    ({"model__exp_branch": "AdaLN"}, "model.exp_branch"),
    ({"loss__w_gp": 1.0}, "loss.w_gp"),
    ({"training__drop_last": False}, "training.drop_last"),
])
def test_keys_that_cannot_be_honoured_fail_naming_them(project, capsys, change, needle):
    tmp, data, _ = project
    assert main(["--config", str(write_config(tmp / "c.yaml", data, **change))]) == 2
    assert needle in capsys.readouterr().err


def test_missing_data_folder_fails_naming_the_key(project, capsys):
    tmp, _, _ = project
    assert main(["--config", str(write_config(tmp / "c.yaml", tmp / "nowhere"))]) == 2
    err = capsys.readouterr().err
    assert "data.data_root" in err and "nowhere" in err


def test_missing_domain_folder_fails_naming_it(project, capsys):
    tmp, data, _ = project
    cfg = write_config(tmp / "c.yaml", data)
    raw = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    raw["data"]["domains"] = ["photo", "vangogh"]
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["--config", str(cfg)]) == 2
    assert "vangogh" in capsys.readouterr().err


# ---- per-file latents: Rust reader vs torch reference, and the original sampler -----------------------------

@pytest.mark.parametrize("shape", [(4, 1, 1), (4, 7, 7), (1, 4, 7, 1000), (3, 1823, 1)])
@pytest.mark.parametrize("form", ["tensor", "dict_latent", "dict_x", "dict_first", "npy"])
def test_read_latent_file_rust_matches_torch(tmp_path, shape, form):
    pytest.importorskip("vqfast._io")
    t = torch.randn(*shape)
    path = tmp_path / ("a.npy" if form == "npy" else "a.pt")
    if form == "npy":
        import numpy as np
        np.save(path, t.numpy())
    else:
        obj = {"tensor": t, "dict_latent": {"x": t * 0, "latent": t}, "dict_x": {"x": t},
               "dict_first": {"z": t, "w": t * 2}}[form]
        torch.save(obj, path)
    want = t.squeeze(0) if len(shape) == 4 else t
    rust, ref = read_latent_file(path, "rust"), read_latent_file(path, "torch")
    assert torch.equal(rust, ref) and torch.equal(ref, want) and rust.dtype == torch.float32


def test_read_latent_file_rejects_bad_shapes(tmp_path):
    torch.save(torch.randn(2, 4, 8, 8), tmp_path / "a.pt")
    with pytest.raises(VQFastError, match="expected a latent of shape"):
        read_latent_file(tmp_path / "a.pt", "torch")


def _original_plan(sizes, epoch, epoch_size):
    """seed 003 dataset.py set_epoch, statement by statement."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(epoch) + 12345)
    n = len(sizes)
    src = torch.randint(low=0, high=n, size=(epoch_size,), generator=g, dtype=torch.long)
    off = torch.randint(low=1, high=n, size=(epoch_size,), generator=g, dtype=torch.long)
    tgt = (src + off) % n
    s = torch.tensor(sizes, dtype=torch.long)
    src_file = torch.randint(low=0, high=int(s.max()), size=(epoch_size,), generator=g, dtype=torch.long) % s[src]
    tgt_file = torch.randint(low=0, high=int(s.max()), size=(epoch_size,), generator=g, dtype=torch.long) % s[tgt]
    return src, tgt, src_file, tgt_file


@pytest.mark.parametrize("reader", ["torch", "auto"])
def test_domain_folders_batches_follow_the_original_sampler(tmp_path, reader):
    latents = write_latents(tmp_path, domains=("a", "b", "c"), per_domain=5, size=7)
    (tmp_path / "b" / "004.pt").unlink()                      # unequal domain sizes
    latents["b"] = latents["b"][:4]
    ds = DomainFolderLatents(tmp_path, ["a", "b", "c"], batch_size=7, reader=reader)
    assert ds.epoch_size == 15 and len(ds) == 2
    ds.set_epoch(1)                                           # engine epoch 1 = original epoch 2
    batches = list(ds)
    src, tgt, sf, tf = _original_plan([5, 4, 5], 2, 15)
    bank = [torch.stack(latents[d]) for d in ("a", "b", "c")]
    for b, batch in enumerate(batches):
        sl = slice(7 * b, 7 * b + 7)
        assert torch.equal(batch["source_style_id"], src[sl]) and torch.equal(batch["target_style_id"], tgt[sl])
        assert torch.equal(batch["content"], torch.stack([bank[d][f] for d, f in zip(src[sl], sf[sl], strict=True)]))
        assert torch.equal(batch["target_style"],
                           torch.stack([bank[d][f] for d, f in zip(tgt[sl], tf[sl], strict=True)]))
    assert (torch.cat([b["source_style_id"] for b in batches]) != torch.cat([b["target_style_id"]
                                                                            for b in batches])).all()
    ds.load_state_dict({"epoch": 1, "batch": 1})              # exact resume position
    assert torch.equal(next(iter(ds))["content"], batches[1]["content"])
