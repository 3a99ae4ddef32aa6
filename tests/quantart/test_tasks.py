"""QuantArt tasks on CPU: stage-2 steps (only model_x2y and D move, frozen parts bit-identical), stage-1 frozen
decoder, typed configs, unpaired data, the shipped configs through the engine, and the stylize CLI."""
import pytest
import torch
from qa_helpers import DD, EMBED_DIM, N_EMBED

from vqfast.data.synthetic import make_images
from vqfast.data.unpaired import ImageStream, make_paintings
from vqfast.errors import CheckpointError, ConfigError
from vqfast.train.config import build
from vqfast.train.families.quantart.config import Stage1Config, Stage2Config
from vqfast.train.families.quantart.task import QuantArtStage1Task, QuantArtStage2Task

CPU = torch.device("cpu")
G_LOGS = {"total_loss", "quant_x2y_loss", "reverse_loss", "style_loss", "d_weight", "disc_factor", "g_loss",
          "disc_loss", "logits_real", "logits_fake", "aeloss", "discloss"}


def stage2_cfg(tmp_path, **model_kw):
    style = make_paintings(tmp_path / "style", num_images=4, size=16, seed=0)
    model = {"n_embed": N_EMBED, "embed_dim": EMBED_DIM, "block_num": 2, "ddconfig": dict(DD, resolution=None),
             "lossconfig": {"disc_ndf": 8}, "style_root": str(style), **model_kw}
    return build(Stage2Config, {"run_dir": str(tmp_path / "run"), "backend": "torch", "model": model,
                                "data": {"root": str(tmp_path), "kind": "images", "size": 16},
                                "train": {"max_steps": 2, "batch_size": 2, "lr": 1e-3, "progress": False}}, "test")


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_stage2_steps_move_only_model_x2y_and_d(tmp_path):
    cfg = stage2_cfg(tmp_path)
    task = QuantArtStage2Task(cfg, CPU)
    task.train()
    x2y_ids = {id(p) for p in task.model.model_x2y.parameters()}
    assert {id(p) for g in task.opt_ae.param_groups for p in g["params"]} == x2y_ids
    assert {id(p) for g in task.opt_disc.param_groups for p in g["params"]} == \
        {id(p) for p in task.discriminator.parameters()}
    for opt in (task.opt_ae, task.opt_disc):
        assert opt.param_groups[0]["betas"] == (0.5, 0.9)
    frozen = {n: snapshot(m) for n, m in task.model.frozen_modules().items()}
    x2y, disc = snapshot(task.model.model_x2y), snapshot(task.discriminator)
    content = torch.rand(2, 3, 16, 16) * 2 - 1
    for step in range(2):
        logs = task.training_step((content, task.style_images(task.style.batch(step, 2))), step)
    assert {k.split("/", 1)[1] for k in logs} == G_LOGS
    assert all(v.dim() == 0 and not v.requires_grad and torch.isfinite(v) for v in logs.values())
    for name, before in frozen.items():
        after = task.model.frozen_modules()[name].state_dict()
        for k, v in before.items():
            assert torch.equal(v, after[k]), f"frozen {name}.{k} changed"
    assert any(not torch.equal(v, task.model.model_x2y.state_dict()[k]) for k, v in x2y.items())
    assert any(not torch.equal(v, task.discriminator.state_dict()[k]) for k, v in disc.items())
    stats = task.codebook_stats()
    assert 0 < float(stats["codebook/usage"]) <= 1


def test_stage2_validation_reports_held_out_content_and_style_losses(tmp_path):
    cfg = stage2_cfg(tmp_path)
    make_images(tmp_path / "content", num_images=3, size=16, seed=1)
    cfg.data.root = cfg.data.val_root = str(tmp_path / "content")
    task = QuantArtStage2Task(cfg, CPU)
    task.build_loader(batch_size=2, rank=0, world_size=1)
    val = task.sample(tmp_path / "run", 7, None)
    assert set(val) == {"val/total_loss", "val/reverse_loss", "val/style_loss"}  # no PSNR against a stylisation
    assert all(v > 0 and v == v for v in val.values())
    x = task.heldout()
    style = task._styles_for(x.shape[0])
    task.model.eval()
    with torch.no_grad():
        quant_x, quant_y, quant_ref, diff, _, _ = task.model.transfer(x, style)
        _, _, expected = task.loss.generator_loss(diff, quant_ref, quant_y, quant_x, 7, split="val")
    assert val["val/style_loss"] == pytest.approx(float(expected["val/style_loss"]), rel=1e-5)
    assert val["val/reverse_loss"] == pytest.approx(float(expected["val/reverse_loss"]), rel=1e-5)
    assert (tmp_path / "run" / "samples" / "step_00000007.png").is_file()


def test_stage2_grad_accum_and_recompute(tmp_path):
    cfg = stage2_cfg(tmp_path)
    cfg.train.reuse_recon_for_d = False
    cfg.train.grad_accum = 2
    task = QuantArtStage2Task(cfg, CPU)
    frames = torch.randint(0, 256, (2, 1, 16, 16, 3), dtype=torch.uint8)  # a loader batch: 2 one-frame samples
    batch, n = task.prepare_batch((frames, ["a.png", "b.png"]), 5)
    assert n == 2 and batch[0].shape == batch[1].shape == (2, 3, 16, 16)
    torch.testing.assert_close(batch[1], task.style_images(task.style.batch(5, 2)))  # style batch = step
    assert torch.isfinite(task.training_step(batch, 0)["train/total_loss"])


def test_stage2_checkpoint_errors_surface_as_checkpoint_error(tmp_path):
    cfg = stage2_cfg(tmp_path, checkpoint_decoder=str(tmp_path / "missing.ckpt"))
    with pytest.raises(CheckpointError, match="checkpoint_decoder.*missing.ckpt"):
        QuantArtStage2Task(cfg, CPU)
    with pytest.raises(CheckpointError, match="require_checkpoints"):
        QuantArtStage2Task(stage2_cfg(tmp_path, require_checkpoints=True), CPU)


def test_stage2_without_checkpoints_warns(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="vqfast"):
        QuantArtStage2Task(stage2_cfg(tmp_path), CPU)
    assert "RANDOM" in caplog.text


def test_stage1_frozen_decoder_stays_put(tmp_path):
    cfg = build(Stage1Config, {
        "run_dir": str(tmp_path / "s1"), "backend": "torch",
        "model": {"n_embed": N_EMBED, "embed_dim": EMBED_DIM, "ddconfig": dict(DD, resolution=None),
                  "freeze_decoder": True},
        "loss": {"disc_start": 0, "perceptual_weight": 0.0, "disc_num_layers": 1, "disc_ndf": 8},
        "perceptual": {"backbone": "random"}, "data": {"synthetic": True, "kind": "images", "size": 16},
        "train": {"max_steps": 1, "batch_size": 2, "lr": 1e-3, "progress": False}}, "test")
    task = QuantArtStage1Task(cfg, CPU)
    task.train()
    dec, enc = snapshot(task.model.decoder), snapshot(task.model.encoder)
    logs = task.training_step(torch.rand(2, 3, 16, 16) * 2 - 1, 0)
    assert torch.isfinite(logs["train/total_loss"]) and float(logs["train/d_weight"]) > 0
    assert all(torch.equal(v, task.model.decoder.state_dict()[k]) for k, v in dec.items())
    assert any(not torch.equal(v, task.model.encoder.state_dict()[k]) for k, v in enc.items())
    assert all(p.grad is None for p in task.model.frozen_parameters())


def test_typed_configs_reject_unknown_and_inconsistent_keys():
    def stage(kind, model):
        return build(Stage2Config if kind == 2 else Stage1Config,
                     {"model": model, "data": {"synthetic": True, "kind": "images"}}, "x.yaml")

    with pytest.raises(ConfigError, match=r"unknown key 'model\.lossconfig\.style_wieght'.*did you mean"):
        stage(2, {"lossconfig": {"style_wieght": 3}})
    with pytest.raises(ConfigError, match=r"unknown key 'model\.use_quantise'"):
        stage(1, {"use_quantise": False})
    with pytest.raises(ConfigError, match="disc_in_channels=3 must equal model.embed_dim=256"):
        stage(2, {"lossconfig": {"disc_in_channels": 3}})
    with pytest.raises(ConfigError, match="variant"):
        stage(2, {"variant": "fuzzy"})
    with pytest.raises(ConfigError, match="model.ckpt_quantize is only read when model.freeze_decoder"):
        stage(1, {"ckpt_quantize": "x.ckpt"})
    with pytest.raises(ConfigError, match="model.n_embed=-3: must be >= 1"):
        stage(2, {"n_embed": -3})
    cfg = stage(2, {"lossconfig": {"style_weight": 100}})
    assert cfg.model.lossconfig.style_weight == 100.0 and cfg.model.embed_dim == 256 and cfg.model.n_embed == 1024
    assert cfg.model.lossconfig.disc_in_channels == 256  # derived from embed_dim


def test_style_stream_is_deterministic_and_covers_every_image(tmp_path):
    style = make_paintings(tmp_path / "style", num_images=4, size=16, seed=3)
    a, b = ImageStream(style, size=16, seed=5), ImageStream(style, size=16, seed=5)
    assert all(torch.equal(a.batch(k, 2), b.batch(k, 2)) for k in range(4))
    assert a.batch(0, 2).shape == (2, 16, 16, 3) and a.batch(0, 2).dtype == torch.uint8
    stream = ImageStream(style, size=16, seed=0)
    counts = torch.bincount(torch.tensor(stream.indices(0, 8)), minlength=4)
    assert counts.tolist() == [2, 2, 2, 2]  # every pass covers every image once
    flat = make_paintings(tmp_path / "p", num_images=1, size=32, seed=0)
    assert len(list(flat.glob("*.png"))) == 1


def test_shipped_stage2_config_trains_two_steps_and_stylizes(tmp_path):
    """`python -m vqfast.train --config quantart_stage2 --set train.max_steps=2` then `python -m vqfast.stylize`."""
    from vqfast.stylize import main as stylize_main
    from vqfast.train.__main__ import main as train_main

    run = tmp_path / "run"
    rc = train_main(["--config", "quantart_stage2", "--set", "train.max_steps=2", "--set", f"run_dir={run}",
                     "--set", "train.device=cpu", "--set", "train.progress=false"])
    assert rc == 0
    assert (run / "checkpoints" / "last.pt").is_file() and list((run / "samples").glob("step_*.png"))
    assert "style_root: " + str(run / "data" / "style") in (run / "config.yaml").read_text()
    out = tmp_path / "out"
    style = min((run / "data" / "style").iterdir())
    assert stylize_main(["--ckpt", str(run), "--content", str(run / "data" / "val"), "--style", str(style),
                         "--out", str(out), "--device", "cpu"]) == 0
    assert len(list(out.glob("*_stylised.png"))) == len(list((run / "data" / "val").iterdir()))
    assert stylize_main(["--ckpt", str(tmp_path / "nope"), "--content", str(style), "--style", str(style),
                         "--out", str(out)]) == 2
