"""QuantArt tasks on CPU: stage-2 steps (only model_x2y and D move, frozen parts bit-identical), stage-1 frozen
decoder, typed configs, unpaired data, the shipped configs through the engine, and the stylize CLI."""
import pytest
import torch
from qa_helpers import DD, EMBED_DIM, N_EMBED
from vqfast.data.unpaired import (
    ImageStream,
    UnpairedImages,
    make_paintings,
    make_unpaired_domains,
)
from vqfast.train.config import (
    Config,
    DataConfig,
    DDConfig,
    LossConfig,
    PerceptualConfig,
    TrainConfig,
)
from vqfast.train.errors import CheckpointError, ConfigError
from vqfast.train.quantart_config import (
    QuantArtStage1Config,
    QuantArtStage2Config,
    Stage2LossConfig,
    parse_model_section,
)
from vqfast.train.tasks.quantart import QuantArtStage1Task, QuantArtStage2Task

CPU = torch.device("cpu")
G_LOGS = {"total_loss", "quant_x2y_loss", "reverse_loss", "style_loss", "d_weight", "disc_factor", "g_loss",
          "disc_loss", "logits_real", "logits_fake", "aeloss", "discloss"}


def stage2_cfg(tmp_path, **model_kw):
    model = QuantArtStage2Config(n_embed=N_EMBED, embed_dim=EMBED_DIM, block_num=2, ddconfig=DDConfig(**DD),
                                 lossconfig=Stage2LossConfig(disc_in_channels=EMBED_DIM, disc_ndf=8), **model_kw)
    return Config(run_dir=str(tmp_path / "run"), backend="torch", model=model,
                  data=DataConfig(kind="images", size=16),
                  train=TrainConfig(max_steps=2, batch_size=2, lr=1e-3, progress=False))


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
        logs = task.training_step(content, step)
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
    grid = task.sample_grid(content)
    assert grid.dtype == torch.uint8 and grid.shape[0] == 3
    assert task.reconstruct(content).shape == content.shape
    assert list((tmp_path / "run" / "samples").glob("stylised_step_*.png"))


def test_stage2_accepts_unpaired_dict_batches_and_recompute(tmp_path):
    cfg = stage2_cfg(tmp_path)
    cfg.train.reuse_recon_for_d = False
    cfg.train.grad_accum = 2
    task = QuantArtStage2Task(cfg, CPU)
    batch = {"content": torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8),
             "style": torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)}
    logs = task.training_step(batch, 0)
    assert torch.isfinite(logs["train/total_loss"])
    with pytest.raises(KeyError, match="style"):
        task.training_step({"content": batch["content"]}, 1)


def test_stage2_checkpoint_errors_surface_as_checkpoint_error(tmp_path):
    cfg = stage2_cfg(tmp_path, checkpoint_decoder=str(tmp_path / "missing.ckpt"))
    with pytest.raises(CheckpointError, match="checkpoint_decoder.*missing.ckpt"):
        QuantArtStage2Task(cfg, CPU)
    with pytest.raises(ConfigError, match="require_checkpoints"):
        QuantArtStage2Task(stage2_cfg(tmp_path, require_checkpoints=True), CPU)


def test_stage2_without_checkpoints_warns(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="vqfast"):
        QuantArtStage2Task(stage2_cfg(tmp_path), CPU)
    assert "RANDOM" in caplog.text


def test_stage1_frozen_decoder_stays_put(tmp_path):
    model = QuantArtStage1Config(n_embed=N_EMBED, embed_dim=EMBED_DIM, ddconfig=DDConfig(**DD), freeze_decoder=True)
    cfg = Config(run_dir=str(tmp_path / "s1"), backend="torch", model=model,
                 loss=LossConfig(disc_start=0, perceptual_weight=0.0, disc_num_layers=1, disc_ndf=8),
                 perceptual=PerceptualConfig(backbone="random"), data=DataConfig(kind="images", size=16),
                 train=TrainConfig(max_steps=1, batch_size=2, lr=1e-3, progress=False))
    task = QuantArtStage1Task(cfg, CPU)
    task.train()
    dec, enc = snapshot(task.model.decoder), snapshot(task.model.encoder)
    logs = task.training_step(torch.rand(2, 3, 16, 16) * 2 - 1, 0)
    assert torch.isfinite(logs["train/total_loss"]) and float(logs["train/d_weight"]) > 0
    assert all(torch.equal(v, task.model.decoder.state_dict()[k]) for k, v in dec.items())
    assert any(not torch.equal(v, task.model.encoder.state_dict()[k]) for k, v in enc.items())
    assert all(p.grad is None for p in task.model.frozen_parameters())


def test_typed_configs_reject_unknown_and_inconsistent_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'model\.lossconfig\.style_wieght'.*did you mean"):
        parse_model_section({"lossconfig": {"style_wieght": 3}}, "x.yaml", "quantart_stage2")
    with pytest.raises(ConfigError, match=r"unknown key 'model\.use_quantise'"):
        parse_model_section({"use_quantise": False}, "x.yaml", "quantart_stage1")
    with pytest.raises(ConfigError, match="disc_in_channels=3 must equal model.embed_dim=256"):
        parse_model_section({"lossconfig": {"disc_in_channels": 3}}, "x.yaml", "quantart_stage2")
    with pytest.raises(ConfigError, match="variant"):
        parse_model_section({"variant": "fuzzy"}, "x.yaml", "quantart_stage2")
    cfg = parse_model_section({"lossconfig": {"style_weight": 100}}, "x.yaml", "quantart_stage2")
    assert cfg.lossconfig.style_weight == 100.0 and cfg.embed_dim == 256 and cfg.n_embed == 1024


def test_unpaired_streams_are_independent_and_deterministic(tmp_path):
    content, style = make_unpaired_domains(tmp_path, num_content=6, num_style=4, size=16, seed=3)
    a = UnpairedImages(content, style, size=16, batch_size=2, seed=5)
    b = UnpairedImages(content, style, size=16, batch_size=2, seed=5)
    assert len(a) == 3
    first = list(a)
    assert all(torch.equal(x["content"], y["content"]) and torch.equal(x["style"], y["style"])
               for x, y in zip(first, b))
    assert first[0]["content"].shape == first[0]["style"].shape == (2, 16, 16, 3)
    assert a.content.indices(0, 6) != list(range(6)) or a.style.indices(0, 4) != list(range(4))
    # the style stream keeps running across content epochs (4 styles, 2 per batch, 3 batches per epoch)
    a.set_epoch(1)
    resumed = next(a.iter_from(1))
    assert torch.equal(resumed["style"], a.style.batch(4, 2))
    stream = ImageStream(style, size=16, seed=0)
    counts = torch.bincount(torch.tensor(stream.indices(0, 8)), minlength=4)
    assert counts.tolist() == [2, 2, 2, 2]  # every pass covers every image once
    flat = make_paintings(tmp_path / "p", num_images=1, size=32, seed=0)
    assert len(list(flat.glob("*.png"))) == 1


def _register(monkeypatch):
    from vqfast.train import registry, tasks
    from vqfast.train.tasks import quantart as tq

    for key, canon, cls, build in (("quantartstage1", "quantart_stage1", QuantArtStage1Config, tq.build_stage1_model),
                                   ("quantartstage2", "quantart_stage2", QuantArtStage2Config, tq.build_stage2_model)):
        monkeypatch.setitem(registry.FAMILIES, key, registry.Family(canon, cls, build, task=canon))
    monkeypatch.setitem(tasks.TASKS, "quantart_stage1", tq.QuantArtStage1Task)
    monkeypatch.setitem(tasks.TASKS, "quantart_stage2", tq.QuantArtStage2Task)


def test_shipped_stage2_config_trains_two_steps_and_stylizes(tmp_path, monkeypatch):
    """`python -m vqfast.train --config quantart_stage2 --set train.max_steps=2` then `python -m vqfast.stylize`."""
    _register(monkeypatch)
    from vqfast.stylize import main as stylize_main
    from vqfast.train.__main__ import main as train_main

    run = tmp_path / "run"
    rc = train_main(["--config", "quantart_stage2", "--set", "train.max_steps=2", "--set", f"run_dir={run}",
                     "--set", "train.device=cpu", "--set", "train.progress=false"])
    assert rc == 0
    assert (run / "checkpoints" / "last.pt").is_file() and list((run / "samples").glob("stylised_step_*.png"))
    assert "style_root: " + str(run / "data" / "style") in (run / "config.yaml").read_text()
    out = tmp_path / "out"
    style = min((run / "data" / "style").iterdir())
    assert stylize_main(["--ckpt", str(run), "--content", str(run / "data" / "val"), "--style", str(style),
                         "--out", str(out), "--device", "cpu"]) == 0
    assert len(list(out.glob("*_stylised.png"))) == len(list((run / "data" / "val").iterdir()))
    assert stylize_main(["--ckpt", str(tmp_path / "nope"), "--content", str(style), "--style", str(style),
                         "--out", str(out)]) == 2
