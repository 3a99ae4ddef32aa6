"""Engine: run-dir outputs, every shipped config smoke-runs, resume continues exactly, bad checkpoints."""
import json

import pytest
import torch

from vqfast.train import CheckpointError, load_config
from vqfast.train.__main__ import main
from vqfast.train.engine import train
from vqfast.train.export import load_safetensors
from vqfast.train.loading import shipped_configs

TINY_VQGAN = ["model.ddconfig.ch=32", "model.ddconfig.ch_mult=[1,2]", "model.ddconfig.num_res_blocks=1",
              "model.ddconfig.attn_resolutions=[]", "model.ddconfig.z_channels=16", "model.ddconfig.resolution=16",
              "data.size=16", "model.n_embed=32", "model.embed_dim=8", "loss.disc_num_layers=1", "loss.disc_ndf=8",
              "perceptual.backbone=random", "data.clip_len=2", "train.batch_size=2", "data.synthetic_videos=3",
              "data.synthetic_frames=4"]
# shrink knobs per family so the CPU smoke test stays fast (the shipped values are GPU-sized)
SHRINK = {
    "vqgan": ["model.ddconfig.ch=32", "model.ddconfig.ch_mult=[1,1,2]", "model.ddconfig.num_res_blocks=1",
              "loss.disc_ndf=16"],
    "emavq": ["model.ddconfig.ch=32", "model.ddconfig.ch_mult=[1,1,2]", "model.ddconfig.num_res_blocks=1",
              "loss.disc_ndf=16"],
    "vqvae2": ["model.hidden_channels=32", "model.res_channels=16"],
    "vqvae": ["model.ch=32", "model.ch_mult=[1,1,2]", "model.num_res_blocks=1"],
}


def _run(tmp_path, name, extra):
    run_dir = tmp_path / name
    cfg = load_config(name, [f"run_dir={run_dir}", *extra])
    return cfg, train(cfg), run_dir


def test_run_dir_contents(tmp_path):
    cfg, last, run_dir = _run(tmp_path, "quickstart", TINY_VQGAN + [
        "train.max_steps=4", "train.log_every=2", "train.sample_every=2", "train.ckpt_every=2",
        "loss.disc_start=1", "loss.disc_train_start=1", "loss.adaptive_weight_before_start=true",
        "train.export_safetensors=true"])
    resolved = (run_dir / "config.yaml").read_text()
    assert str(run_dir / "data" / "train") in resolved  # generated data.root recorded
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_lines = [l for l in lines if "train/total_loss" in l]
    assert [l["step"] for l in train_lines] == [2, 4]
    for key in ["train/total_loss", "train/quant_loss", "train/nll_loss", "train/rec_loss", "train/p_loss",
                "train/d_weight", "train/disc_factor", "train/g_loss", "train/disc_loss", "train/logits_real",
                "train/logits_fake", "lr", "samples_per_s", "codebook/usage"]:
        assert key in train_lines[-1], key
    assert any("val/psnr" in l for l in lines)
    assert (run_dir / "epochs.jsonl").read_text().strip()
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} >= {"last.pt", "step_00000002.pt",
                                                                    "step_00000004.pt"}
    assert sorted(p.name for p in (run_dir / "samples").glob("*.png")) == ["step_00000002.png", "step_00000004.png"]
    assert list(run_dir.glob("events.out.tfevents*"))
    ck = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ck["step"] == 4 and set(ck["optimizers"]) == {"opt_ae", "opt_disc"} and "discriminator" in ck["modules"]
    assert "rng" in ck and "sched_ae" in ck["schedulers"]
    st = load_safetensors(run_dir / "model.safetensors")
    torch.testing.assert_close(st["quantize.embedding.weight"], ck["modules"]["model"]["quantize.embedding.weight"])


def _vq_family_configs():
    """Shipped configs of the families this suite owns (the vq task); other families test their own."""
    import yaml

    from vqfast.train.paramjson import read_json
    from vqfast.train.registry import resolve_family

    out = []
    for p in shipped_configs():
        raw = read_json(p) if p.suffix == ".json" else (yaml.safe_load(p.read_text()) or {})
        mtype = raw.get("model_type") or (raw.get("model") or {}).get("type", "vqgan")
        try:
            if resolve_family(mtype, require_impl=False).task == "vq":
                out.append(p.name)
        except Exception:
            out.append(p.name)
    return out


@pytest.mark.parametrize("path", _vq_family_configs())
def test_every_shipped_config_runs_two_steps(tmp_path, path):
    cfg = load_config(path)
    extra = SHRINK.get(cfg.model.type, []) if path != "quickstart.yaml" else []
    if path == "param.json":
        extra = SHRINK["emavq"]
    _, last, run_dir = _run(tmp_path, path, ["train.max_steps=2", *extra])
    assert last["step"] == 2 and (run_dir / "checkpoints" / "last.pt").is_file()


def test_cli_main_two_steps_and_errors(tmp_path, capsys):
    rc = main(["--config", "quickstart", "--set", f"run_dir={tmp_path / 'cli'}", "--set", "train.max_steps=1",
               *[a for kv in TINY_VQGAN for a in ("--set", kv)]])
    assert rc == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 1
    assert main(["--config", "quickstart", "--set", "train.max_stepz=1"]) == 2
    assert "train.max_stepz" in capsys.readouterr().err


@pytest.mark.parametrize("model_set", [[], ["model.type=emavq"]])
def test_resume_continues_exactly(tmp_path, model_set):
    common = TINY_VQGAN + model_set + ["train.log_every=1", "train.ckpt_every=2", "train.sample_every=100",
                                       "loss.disc_start=1", "loss.disc_train_start=0", "train.disc_every=2", "data.synthetic_videos=2",
                                       "train.scheduler=exponential", "train.lr_decay_every=1", "train.lr_decay=0.9"]
    _run(tmp_path, "quickstart", common + ["train.max_steps=5", f"data.root={tmp_path / 'none'}"]) \
        if False else None
    cfg_a = load_config("quickstart", [f"run_dir={tmp_path / 'a'}", *common, "train.max_steps=5"])
    train(cfg_a)
    cfg_b = load_config("quickstart", [f"run_dir={tmp_path / 'b'}", *common, "train.max_steps=2",
                                       f"data.root={cfg_a.data.root}", f"data.val_root={cfg_a.data.val_root}"])
    train(cfg_b)
    cfg_b2 = load_config("quickstart", [f"run_dir={tmp_path / 'b'}", *common, "train.max_steps=5",
                                        f"data.root={cfg_a.data.root}", f"data.val_root={cfg_a.data.val_root}"])
    train(cfg_b2, resume=str(tmp_path / "b" / "checkpoints" / "last.pt"))
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 5
    for group in ("model", "discriminator"):
        for k, v in a["modules"][group].items():
            torch.testing.assert_close(b["modules"][group][k], v, rtol=0, atol=0, msg=f"{group}.{k}")
    assert a["optimizers"]["opt_ae"]["state"].keys() == b["optimizers"]["opt_ae"]["state"].keys()


def test_corrupt_and_foreign_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip at all")
    cfg = load_config("quickstart", [f"run_dir={tmp_path / 'r'}", *TINY_VQGAN, "train.max_steps=1"])
    with pytest.raises(CheckpointError, match="corrupt"):
        train(cfg, resume=str(bad))
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a vqfast"):
        train(cfg, resume=str(foreign))
    train(cfg)
    cfg2 = load_config("quickstart", [f"run_dir={tmp_path / 'r2'}", *TINY_VQGAN, "model.n_embed=16",
                                      "train.max_steps=2"])
    with pytest.raises(CheckpointError, match="does not match"):
        train(cfg2, resume=str(tmp_path / "r" / "checkpoints" / "last.pt"))
