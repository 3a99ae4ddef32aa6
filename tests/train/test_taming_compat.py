"""Coming from taming-transformers: its checkpoints (with the trained discriminator), its logged scalar names,
its validation scalars and its LPIPS dropout behaviour."""
import json

import pytest
import torch

from vqfast.errors import CheckpointError
from vqfast.losses import VQLPIPSWithDiscriminator
from vqfast.models.vqgan import VQModel
from vqfast.train import load_config, train
from vqfast.train import trainer as Trainer
from vqfast.train.__main__ import main

DD = {"ch": 32, "out_ch": 3, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
      "in_channels": 3, "resolution": 16, "z_channels": 16, "double_z": False}
TINY = ["model.ddconfig.ch=32", "model.ddconfig.ch_mult=[1,2]", "model.ddconfig.num_res_blocks=1",
        "model.ddconfig.attn_resolutions=[]", "model.ddconfig.z_channels=16", "data.size=16", "model.n_embed=32",
        "model.embed_dim=8", "loss.disc_num_layers=1", "loss.disc_ndf=8", "perceptual.backbone=random",
        "data.clip_len=2", "train.batch_size=2", "data.synthetic_videos=3", "data.synthetic_frames=4",
        "train.progress=false"]


def _lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _taming_ckpt(path, *, with_disc=True, ndf=8, layers=1):
    """A Lightning checkpoint as taming's main.py writes it: state_dict holds the VQModel and its ``loss`` child
    (VQLPIPSWithDiscriminator: ``loss.discriminator.*``, ``loss.perceptual_loss.*``), plus trainer state."""
    torch.manual_seed(123)
    model = VQModel(DD, n_embed=32, embed_dim=8)
    loss = VQLPIPSWithDiscriminator(0, disc_num_layers=layers, disc_ndf=ndf, perceptual_weight=1.0,
                                    perceptual_backbone="random")
    for p in loss.discriminator.parameters():
        p.data.normal_()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    if with_disc:
        sd.update({f"loss.{k}": v.clone() for k, v in loss.state_dict().items()})
    torch.save({"epoch": 3, "global_step": 1234, "state_dict": sd, "optimizer_states": [], "lr_schedulers": []},
               path)
    return sd


def test_taming_checkpoint_loads_the_trained_discriminator(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    sd = _taming_ckpt(ckpt)
    cfg = load_config("quickstart", [f"run_dir={tmp_path / 'run'}", *TINY, f"model.ckpt_path={ckpt}"])
    task = Trainer(cfg).task
    for k, v in task.model.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0, msg=k)
    disc = task.discriminator.state_dict()
    assert disc
    for k, v in disc.items():
        torch.testing.assert_close(v, sd[f"loss.discriminator.{k}"], rtol=0, atol=0, msg=k)


def test_taming_checkpoint_without_discriminator_and_a_misfit_one(tmp_path, caplog):
    bare = tmp_path / "bare.ckpt"
    _taming_ckpt(bare, with_disc=False)
    cfg = load_config("quickstart", [f"run_dir={tmp_path / 'a'}", *TINY, f"model.ckpt_path={bare}"])
    with caplog.at_level("INFO", logger="vqfast"):
        Trainer(cfg)
    assert "the discriminator starts from scratch" in caplog.text
    wide = tmp_path / "wide.ckpt"
    _taming_ckpt(wide, ndf=16)
    cfg = load_config("quickstart", [f"run_dir={tmp_path / 'b'}", *TINY, f"model.ckpt_path={wide}"])
    with pytest.raises(CheckpointError, match="loss.disc_ndf"):
        Trainer(cfg)


def test_taming_scalar_names_logged_in_training_and_validation(tmp_path):
    run = tmp_path / "run"
    cfg = load_config("quickstart", [f"run_dir={run}", *TINY, "train.max_steps=2", "train.log_every=1",
                                     "train.sample_every=2", "loss.disc_start=0", "loss.disc_train_start=0",
                                     "loss.perceptual_weight=1.0"])
    train(cfg)
    lines = _lines(run)
    trained = [line for line in lines if "train/total_loss" in line]
    assert trained and all(line["train/aeloss"] == line["train/total_loss"] for line in trained)
    assert all(line["train/discloss"] == line["train/disc_loss"] for line in trained)
    val = [line for line in lines if "val/aeloss" in line]
    assert len(val) == 1
    taming_val = {"val/total_loss", "val/quant_loss", "val/nll_loss", "val/rec_loss", "val/p_loss", "val/d_weight",
                  "val/disc_factor", "val/g_loss", "val/disc_loss", "val/logits_real", "val/logits_fake",
                  "val/aeloss", "val/discloss", "val/psnr"}
    assert taming_val <= set(val[0])
    assert val[0]["val/d_weight"] == 0.0  # as taming: no graph in validation
    assert val[0]["val/p_loss"] > 0 and val[0]["val/rec_loss"] > val[0]["val/p_loss"]  # rec = L1 + LPIPS


def test_val_rec_loss_is_taming_l1_plus_lpips(tmp_path):
    cfg = load_config("quickstart", [f"run_dir={tmp_path / 'run'}", *TINY, "loss.perceptual_weight=1.0"])
    trainer = Trainer(cfg)
    task = trainer.task
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    recon, logs = task.validation_losses(x, 0)
    with torch.no_grad():
        task.model.eval()
        _, expected, _, _ = task.model.vq_forward(x)
        p = task.loss.perceptual_loss(x, expected)
        rec = ((x - expected).abs() + p).mean()
    torch.testing.assert_close(recon, expected)
    torch.testing.assert_close(logs["val/rec_loss"], rec)
    task.validation_losses(x, 0)
    assert not task.model.training  # validation restores the previous mode: eval stays eval ...
    task.train()
    task.validation_losses(x, 0)
    assert task.model.training and task.loss.discriminator.training  # ... and train stays train


@pytest.mark.parametrize("taming_dropout", [False, True])
def test_lpips_dropout_follows_taming_only_when_asked(tmp_path, taming_dropout):
    cfg = load_config("quickstart", [f"run_dir={tmp_path / 'run'}", *TINY, "loss.perceptual_weight=1.0",
                                     f"perceptual.taming_dropout={str(taming_dropout).lower()}"])
    task = Trainer(cfg).task
    task.train()
    lpips = task.loss.perceptual_loss
    assert lpips.training is taming_dropout
    drops = [m for m in lpips.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(m.training is taming_dropout for m in drops)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    a, b = lpips(x, y), lpips(x, y)
    assert torch.equal(a, b) is (not taming_dropout)  # live dropout: two calls differ
    task.loss.eval()
    assert not lpips.training


def test_dinovq_rejects_the_taming_only_dropout_key(capsys):
    rc = main(["--config", "dinovq", "--set", "perceptual.taming_dropout=true", "train.max_steps=1"])
    assert rc == 2 and "taming_dropout" in capsys.readouterr().err


# ---- taming's own YAML, as written -------------------------------------------------------------------------------
def _custom_vqgan_yaml(tmp_path, *, target="taming.models.vqgan.VQModel", extra_params=None, lightning=None):
    """configs/custom_vqgan.yaml of taming-transformers, shrunk, with image list files the test writes."""
    from vqfast.data.synthetic import make_images

    train = make_images(tmp_path / "imgs" / "train", num_images=6, size=24, seed=1)
    test = make_images(tmp_path / "imgs" / "test", num_images=3, size=24, seed=2)
    (tmp_path / "training.txt").write_text("".join(f"{p}\n" for p in sorted(train.iterdir())))
    (tmp_path / "test.txt").write_text("".join(f"{p}\n" for p in sorted(test.iterdir())))
    cfg = {"model": {"base_learning_rate": 4.5e-6, "target": target, "params": {
        "embed_dim": 8, "n_embed": 32, **(extra_params or {}),
        "ddconfig": {"double_z": False, "z_channels": 16, "resolution": 16, "in_channels": 3, "out_ch": 3, "ch": 32,
                     "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0},
        "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator", "params": {
            "disc_conditional": False, "disc_in_channels": 3, "disc_start": 1, "disc_weight": 0.8,
            "codebook_weight": 1.0, "disc_num_layers": 1, "disc_ndf": 8}}}},
        "data": {"target": "main.DataModuleFromConfig", "params": {"batch_size": 2, "num_workers": 8, "train": {
            "target": "taming.data.custom.CustomTrain",
            "params": {"training_images_list_file": str(tmp_path / "training.txt"), "size": 16}},
            "validation": {"target": "taming.data.custom.CustomTest",
                           "params": {"test_images_list_file": str(tmp_path / "test.txt"), "size": 16}}}}}
    if lightning is not None:
        cfg["lightning"] = lightning
    path = tmp_path / "custom_vqgan.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    return path, train, test


def test_taming_yaml_as_written_trains_on_its_list_files(tmp_path):
    import yaml

    ckpt = tmp_path / "vqgan_imagenet_f16_1024.ckpt"
    sd = _taming_ckpt(ckpt)
    path, train_dir, _ = _custom_vqgan_yaml(tmp_path, extra_params={"ckpt_path": str(ckpt)},
                                            lightning={"trainer": {"benchmark": True, "max_steps": 2}})
    run = tmp_path / "run"
    rc = main(["--config", str(path), "--set", f"run_dir={run}", "perceptual.backbone=random", "train.progress=false",
               "train.sample_every=2"])
    assert rc == 0
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"]["type"] == "vqgan" and resolved["train"]["max_steps"] == 2
    assert resolved["data"]["train_list"] == str(tmp_path / "training.txt") and resolved["data"]["kind"] == "images"
    linked = sorted((run / "data" / "train_files").iterdir())
    assert [p.resolve() for p in linked] == sorted(p.resolve() for p in train_dir.iterdir())  # the user's images
    assert resolved["data"]["root"] == str((run / "data" / "train_files").resolve())
    assert resolved["train"]["base_learning_rate"] == 4.5e-6 and resolved["loss"]["disc_weight"] == 0.8
    first = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert first["step"] == 2
    lines = _lines(run)
    assert any("val/aeloss" in line for line in lines) and any("train/aeloss" in line for line in lines)
    del sd


def test_taming_yaml_errors_name_the_keys(tmp_path, capsys):
    path, *_ = _custom_vqgan_yaml(tmp_path, extra_params={"colorize_nlabels": 5},
                                  lightning={"trainer": {"precision": 16, "mystery": 1}})
    rc = main(["--config", str(path), "--set", f"run_dir={tmp_path / 'r'}"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "colorize_nlabels" in err and "precision=16" in err and "mystery" in err
    (tmp_path / "training.txt").unlink()
    path, *_ = _custom_vqgan_yaml(tmp_path / "b")
    (tmp_path / "b" / "training.txt").unlink()
    rc = main(["--config", str(path), "--set", f"run_dir={tmp_path / 'r2'}", "train.max_steps=1"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "data.train_list" in err and "training.txt" in err


def test_quantart_stage1_yaml_with_its_keys_is_the_quantart_family(tmp_path):
    path, *_ = _custom_vqgan_yaml(tmp_path, target="quantart.models.stage_1.BaseVQGAN")
    import yaml

    raw = yaml.safe_load(path.read_text())
    raw["model"]["params"]["lossconfig"]["target"] = "quantart.losses.stage_1.Stage1Loss"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert cfg.model.type == "quantart_stage1" and cfg.data.train_list == str(tmp_path / "training.txt")
    raw["model"]["target"] = "taming.models.vqgan.VQModel"
    raw["model"]["params"]["freeze_decoder"] = False
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path).model.type == "quantart_stage1"
    del raw["model"]["params"]["freeze_decoder"]
    raw["model"]["params"]["lossconfig"]["target"] = "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path).model.type == "vqgan"  # siyuhuang's vqgan_wikiart.yaml: a taming file
    run = tmp_path / "run"
    raw["model"]["target"] = "quantart.models.stage_1.BaseVQGAN"
    path.write_text(yaml.safe_dump(raw))
    assert main(["--config", str(path), "--set", f"run_dir={run}", "train.max_steps=2", "perceptual.backbone=random",
                 "train.progress=false"]) == 0


def test_taming_dataset_sizes_must_agree_and_random_crop_is_refused(tmp_path):
    import yaml

    from vqfast.errors import ConfigError

    path, *_ = _custom_vqgan_yaml(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["data"]["params"]["validation"]["params"]["size"] = 32
    raw["data"]["params"]["train"]["params"]["random_crop"] = True
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="size=32 differs from the other split's 16") as info:
        load_config(path)
    assert "random_crop: vqfast crops the centre" in str(info.value)
