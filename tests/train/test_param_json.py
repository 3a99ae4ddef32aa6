"""Seed-002 files as the video pipeline ships them: a param.json naming its data folders / file lists and its
checkpoint, run through ``python -m vqfast.train`` for 2 CPU steps, using the user's data and weights."""
import json
import logging
import sys
import types

import pytest
import torch
import yaml

from vqfast.data import make_images, make_video_folders
from vqfast.errors import ConfigError
from vqfast.train import load_config, trainer
from vqfast.train.__main__ import main

TINY_DD = {"z_channels": 8, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32, "ch_mult": [1, 2],
           "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}


def taming_param_json(**train_args) -> dict:
    """The pipeline's TamingVQGAN param.json layout (seed 002 §配置示例), tiny sizes."""
    return {
        "model_type": "TamingVQGAN",
        "model_args": {"model_variant": "VQModel", "n_embed": 16, "embed_dim": 8, "ddconfig": dict(TINY_DD),
                       "lossconfig": {"target": "models.taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                                      "params": {"disc_conditional": False, "disc_in_channels": 3, "disc_start": 0,
                                                 "disc_weight": 0.8, "codebook_weight": 1.0, "disc_num_layers": 1,
                                                 "perceptual_weight": 0.0,
                                                 "disc_ndf": 8}}},
        "train_args": {"use_taming_loss": True, "lr": 1e-4, "num_steps": 2, "save_interval": 10000,
                       "validation_interval": 10000, "checkpoint_path": None, **train_args},
        "data_args": {"batch_size": 1, "num_threads": 1, "device_id": 0, "sequence_length": 2, "shard_id": 0,
                      "num_shards": 1, "initial_prefetch_size": 16, "seed": 0},
        "use_wandb": False, "project_name": "test",
        "perceptual": {"backbone": "random"},
    }


def _write(tmp_path, obj, name="param.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj, indent=2))
    return p


def _run(p, run_dir, *extra):
    return main(["--config", str(p), "--set", f"run_dir={run_dir}", "train.progress=false", *extra])


def _resolved(run_dir) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def _metric_keys(run_dir) -> set:
    return {k for line in (run_dir / "metrics.jsonl").read_text().splitlines() for k in json.loads(line)}


class FakeWandb(types.ModuleType):
    """Records what a wandb run is given (wandb itself is not a dependency)."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.logged, self.finished = [], [], 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return self

    def log(self, record, step=None):
        self.logged.append((step, record))

    def finish(self):
        self.finished += 1

    def Image(self, array):
        return ("image", array.shape)


def test_video_folders_of_data_process_are_trained_on_at_the_model_resolution(tmp_path, capsys, monkeypatch):
    train_dir = make_video_folders(tmp_path / "videos" / "train", num_videos=2, num_frames=3, size=40, seed=1)
    val_dir = make_video_folders(tmp_path / "videos" / "vaild", num_videos=1, num_frames=3, size=40, seed=2)
    obj = taming_param_json()
    obj["data_process"] = {"train": str(train_dir), "vaild": str(val_dir)}
    obj["use_wandb"] = True
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run_dir = tmp_path / "run"
    assert _run(_write(tmp_path, obj), run_dir, "train.log_every=1") == 0, capsys.readouterr().err
    assert fake.inits[0]["project"] == "test" and fake.finished == 1  # use_wandb honoured: project_name
    assert [step for step, rec in fake.logged if "train/total_loss" in rec] == [1, 2]
    r = _resolved(run_dir)
    assert r["data"]["root"] == str(train_dir) and r["data"]["val_root"] == str(val_dir)
    assert r["data"]["kind"] == "video" and r["data"]["clip_len"] == 2 and r["data"]["synthetic"] is False
    assert r["data"]["size"] == 32 and r["model"]["ddconfig"]["resolution"] == 32  # ddconfig.resolution = frames
    assert not (run_dir / "data").exists()  # nothing generated
    # the pipeline's defaults: D every 3 steps, lr_decay 0.99 per 1000 steps, use_gan on
    t = r["train"]
    assert (t["disc_every"], t["scheduler"], t["lr_decay"], t["lr_decay_every"], t["use_gan"]) == (3, "exponential",
                                                                                                     0.99, 1000, True)
    assert "train/disc_loss" in _metric_keys(run_dir)  # step 0 % 3 == 0: D trained


def test_image_file_lists_train_the_pipelines_losscalculator_gan(tmp_path, capsys):
    """use_images + data_args.training_data_files, a VqVae without use_gan (default on): the LossCalculator path."""
    images = sorted(make_images(tmp_path / "imgs", num_images=5, size=32, seed=3).glob("*.jpg"))
    chosen = [str(p) for p in images[:4]]
    obj = {"model_type": "VqVae", "use_images": True,
           "model_args": {"group_count": 2, "n_hid": 16, "vocab_size": 16, "n_init": 8, "input_channels": 3,
                          "output_channels": 3, "commitment_cost": 0.25, "decay": 0.99, "ch": 32, "ch_mult": [1, 2],
                          "num_res_blocks": 1, "attn_resolutions": [], "resolution": 32},
           "data_args": {"batch_size": 1, "sequence_length": 2, "training_data_files": chosen,
                         "validation_data_files": [str(images[4])]},
           "train_args": {"num_steps": 2, "lr": 1e-4, "disc_start": 1, "disc_factor": 0.8},
           "perceptual": {"backbone": "random"}}
    run_dir = tmp_path / "run"
    assert _run(_write(tmp_path, obj), run_dir) == 0, capsys.readouterr().err
    r = _resolved(run_dir)
    assert r["data"]["train_files"] == chosen and r["data"]["kind"] == "images"
    assert r["data"]["root"] == str((run_dir / "data" / "train_files").resolve())
    linked = sorted(p.resolve() for p in (run_dir / "data" / "train_files").iterdir())
    assert [str(p) for p in linked] == chosen
    assert r["train"]["batch_size"] == 2  # batch_size 1 x sequence_length 2 independent images
    assert r["loss"]["kind"] == "losscalculator" and r["loss"]["disc_factor"] == 0.8 and r["train"]["use_gan"]
    assert r["train"]["lr"] == 1e-4 and r["train"]["betas"] == [0.9, 0.999]
    keys = _metric_keys(run_dir)
    assert {"train/lambda_gan", "train/perceptual_rec_loss", "train/gan_loss", "loss/gan_d"} <= keys


@pytest.mark.parametrize("where", ["data_process", "file_list"])
def test_param_json_naming_missing_data_exits_2_naming_the_path(tmp_path, capsys, where):
    missing = tmp_path / "no_such_videos"
    obj = taming_param_json()
    if where == "data_process":
        obj["data_process"] = {"train": str(missing), "vaild": str(missing)}
    else:
        obj["data_args"]["training_data_files"] = [str(missing / "clip0.mp4")]
    assert _run(_write(tmp_path, obj), tmp_path / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # the one error line (after the log lines)
    assert err.startswith("error: ") and str(missing) in err


def test_param_json_without_data_names_the_keys_to_set(tmp_path):
    with pytest.raises(ConfigError, match="data_process.train or data_args.training_data_files.*data.synthetic"):
        load_config(_write(tmp_path, taming_param_json()))
    obj = taming_param_json()
    obj["data_process"] = {"train": str(tmp_path)}
    obj["data"] = {"synthetic": True}
    with pytest.raises(ConfigError, match="names its training data twice"):
        load_config(_write(tmp_path, obj))
    obj = taming_param_json()
    obj["data"] = {"synthetic": True, "size": 64}
    with pytest.raises(ConfigError, match="data.size=64 differs from the model's resolution=32"):
        load_config(_write(tmp_path, obj))


def _pipeline_checkpoint(cfg, path, steps):
    """A checkpoint_step{N}.pth.tar as trainVqVae.py writes it for a taming model: state_dict holds the loss child
    (loss.discriminator.*, loss.perceptual_loss.*), plus optimizer, scheduler, optimizer_disc."""
    from vqfast.train.families.vq.task import VQTask
    task = VQTask(cfg, torch.device("cpu"))
    with torch.no_grad():
        for p in [*task.model.parameters(), *task.discriminator.parameters()]:
            p.add_(torch.randn_like(p) * 0.1)  # weights a fresh run would not have
    for opt, params in ((task.opt_ae, task.model.ae_parameters()), (task.opt_disc, task.discriminator.parameters())):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        opt.zero_grad(set_to_none=True)
    sd = dict(task.model.state_dict())
    sd.update({f"loss.discriminator.{k}": v for k, v in task.discriminator.state_dict().items()})
    sd["loss.perceptual_loss.lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    sched = torch.optim.lr_scheduler.ExponentialLR(torch.optim.Adam([torch.zeros(1, requires_grad=True)]), 0.99)
    torch.save({"steps": steps, "state_dict": sd, "optimizer": task.opt_ae.state_dict(),
                "scheduler": sched.state_dict(), "optimizer_disc": task.opt_disc.state_dict()}, path)
    return sd


def test_pipeline_checkpoint_path_resumes_weights_optimizers_and_step(tmp_path, capsys, caplog):
    data = make_video_folders(tmp_path / "train", num_videos=2, num_frames=3, size=32, seed=1)
    obj = taming_param_json(num_steps=7)
    obj["data_process"] = {"train": str(data)}
    ckpt = tmp_path / "checkpoints_param" / "checkpoint_step5.pth.tar"
    ckpt.parent.mkdir()
    sd = _pipeline_checkpoint(load_config(_write(tmp_path, obj)), ckpt, steps=5)
    obj["train_args"]["checkpoint_path"] = str(ckpt)
    p = _write(tmp_path, obj)
    with caplog.at_level(logging.INFO, logger="vqfast"):
        run = trainer(load_config(p, [f"run_dir={tmp_path / 'run'}", "train.progress=false"]))
    assert f"resumed from seed-002 pipeline checkpoint {ckpt} at step 5" in caplog.text
    assert run.step == 5
    file = torch.load(ckpt, weights_only=True)
    for k, v in run.task.model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    for k, v in run.task.discriminator.state_dict().items():
        assert torch.equal(v, sd[f"loss.discriminator.{k}"]), k
    exp_avg = [s["exp_avg"] for s in run.task.opt_ae.state_dict()["state"].values()]
    assert all(torch.equal(a, b["exp_avg"]) for a, b in zip(exp_avg, file["optimizer"]["state"].values(),
                                                              strict=True))
    assert run.fit()["step"] == 7
    # init: the weights only, from step 0, named in the log
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vqfast"):
        rc = _run(p, tmp_path / "init", "train.pipeline_checkpoint_mode=init", "train.max_steps=2")
    assert rc == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2
    assert "initialised the weights from seed-002 pipeline checkpoint" in caplog.text


def test_a_file_that_is_not_a_pipeline_checkpoint_exits_2(tmp_path, capsys):
    data = make_video_folders(tmp_path / "train", num_videos=1, num_frames=3, size=32, seed=1)
    bad = tmp_path / "checkpoint_step1.pth.tar"
    torch.save({"model": {}}, bad)
    obj = taming_param_json(checkpoint_path=str(bad))
    obj["data_process"] = {"train": str(data)}
    assert _run(_write(tmp_path, obj), tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "is not a seed-002 pipeline checkpoint" in err and str(bad) in err
    # a state_dict of another model (e.g. the original VqVae's module names): exit 2 naming the keys
    torch.save({"steps": 1, "state_dict": {"encoder.model.0.weight": torch.zeros(1)}, "optimizer": {},
                "scheduler": {}}, bad)
    assert _run(_write(tmp_path, obj), tmp_path / "run2") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "does not match the VQModel" in err and "encoder.model.0.weight" in err


def test_param_json_pipeline_defaults_and_switches(tmp_path):
    obj = taming_param_json()
    obj["data"] = {"synthetic": True}
    cfg = load_config(_write(tmp_path, obj))
    assert cfg.loss.kind == "vqlpips" and cfg.train.use_gan and cfg.train.disc_every == 3
    assert cfg.train.scheduler == "exponential" and cfg.train.lr_decay == 0.99 and cfg.train.lr == 1e-4
    obj["train_args"].update(use_taming_loss=False, lr=3e-4)  # taming model, the traditional LossCalculator path
    cfg = load_config(_write(tmp_path, obj))
    assert cfg.loss.kind == "losscalculator" and cfg.train.lr == 3e-4 and cfg.loss.disc_start == 20000
    obj["train_args"].update(use_gan=False)
    cfg = load_config(_write(tmp_path, obj))
    assert cfg.loss.kind == "mse" and cfg.loss.vq_weight == 1.0 and cfg.train.use_gan is False
    vq = {"model_type": "VQVAE2", "model_args": {"n_hid": 16}, "train_args": {"use_taming_loss": True},
          "data": {"synthetic": True}}
    with pytest.raises(ConfigError, match="use_taming_loss=true.*VqVae / VQVAE2 have no taming loss"):
        load_config(_write(tmp_path, vq))
    obj = taming_param_json()
    obj["data"] = {"synthetic": True}
    obj["use_wandb"] = True
    obj["model_args"].update(remap="used.npy", unknown_index="extra")
    cfg = load_config(_write(tmp_path, obj))
    assert cfg.train.use_wandb and cfg.train.wandb_project == "test"
    assert cfg.model.remap == "used.npy" and cfg.model.unknown_index == "extra"


def test_use_wandb_without_wandb_installed_warns(monkeypatch, caplog):
    from vqfast.train.families.vq.pipeline import wandb_sinks
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    cfg = load_config("param.json", ["train.use_wandb=true"])
    with caplog.at_level(logging.WARNING, logger="vqfast"):
        assert wandb_sinks(cfg, "unused") == []
    assert "wandb is not installed" in caplog.text
