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
