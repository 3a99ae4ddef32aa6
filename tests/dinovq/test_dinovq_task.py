"""DinoVQTask: engine smoke run, the two-optimizer GAN step (D frozen in G, D reuses the G recon),
precomputed-shard teachers through the CLI, online teachers, and the missing-teacher error."""
import json

import pytest
import torch

from vqfast.data.dino import (
    RandomViTTeacher,
    TeacherUnavailableError,
    make_dino_dataset,
)
from vqfast.train import load_config, train
from vqfast.train.__main__ import main
from vqfast.train.families.dinovq.task import DinoVQTask

CPU = ["train.device=cpu", "train.max_steps=2", "train.log_every=1", "train.progress=false"]


def _cfg(name, tmp_path, *extra):
    return load_config(name, CPU + [f"run_dir={tmp_path / 'run'}", *extra])


def test_engine_runs_two_steps(tmp_path):
    cfg = _cfg("dinovq", tmp_path, "data.synthetic_images=4")
    last = train(cfg)
    assert last["step"] == 2
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*lines)
    for key in ("train/total_loss", "train/dino_loss", "train/recon_loss", "train/vq_loss",
                "train/dino_loss_weighted", "codebook/active_codes", "codebook/dead_codes",
                "codebook/restarted_codes", "codebook/perplexity"):
        assert key in keys, key
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def _gan_task(tmp_path, *extra):
    from vqfast.data.synthetic import make_images
    make_images(tmp_path / "imgs", num_images=2, size=64)
    cfg = _cfg("dinovq_high_quality", tmp_path, "model.disc_start=0", "model.use_perceptual=false",
               f"data.root={tmp_path / 'imgs'}", "model.teacher.kind=random", "model.disc_num_layers=2",
               "model.disc_dim=8", *extra)
    return DinoVQTask(cfg, torch.device("cpu"))


@pytest.mark.parametrize("reuse", [True, False])
def test_gan_step(tmp_path, reuse):
    task = _gan_task(tmp_path, f"train.reuse_recon_for_d={str(reuse).lower()}")
    task.train()
    D = task.discriminator
    d_ids = {id(p) for p in D.parameters()}
    assert not any(id(p) in d_ids for g in task.opt_ae.param_groups for p in g["params"])
    calls = []
    task.model.image_decoder.register_forward_hook(lambda *a: calls.append(1))
    d_before = [p.detach().clone() for p in D.parameters()]
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    logs = task.training_step((x, task.teacher(x)), 0)
    assert len(calls) == (1 if reuse else 2)  # reuse: the D step sees the detached G-phase reconstruction
    for key in ("train/total_loss", "train/gen_adv_loss_weighted", "train/disc_loss", "train/disc_weight",
                "train/logits_real", "train/logits_fake"):
        assert logs[key].dim() == 0 and not logs[key].requires_grad, key
    assert float(logs["train/disc_weight"]) == 0.5
    assert any(not torch.equal(a, b) for a, b in zip(d_before, D.parameters(), strict=True))
    assert all(p.requires_grad for p in D.parameters())  # unfrozen again after the G step


def test_no_d_step_before_disc_start(tmp_path):
    task = _gan_task(tmp_path, "model.disc_start=5")
    task.train()
    d_before = [p.detach().clone() for p in task.discriminator.parameters()]
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    logs = task.training_step((x, task.teacher(x)), 4)
    assert "train/disc_loss" not in logs and float(logs["train/gen_adv_loss_weighted"]) == 0.0
    assert all(torch.equal(a, b) for a, b in zip(d_before, task.discriminator.parameters(), strict=True))


def test_precomputed_shards_train_through_the_cli(tmp_path, capsys):
    """Teacher features precomputed into <data.root>/dino_features are looked up by image path: the engine's
    batches carry the paths, so `python -m vqfast.train` trains with them (and never runs a teacher)."""
    from vqfast.loaders.clips import load_frame

    root = tmp_path / "data"
    teacher = RandomViTTeacher(64, 16, dim=64, seed=7)
    make_dino_dataset(root, num_images=4, size=64, teacher=teacher, shard_size=3)
    run = tmp_path / "run"
    assert main(["--config", "dinovq", "--set", *CPU, f"run_dir={run}", f"data.root={root}", "data.synthetic=false",
                 "train.batch_size=2", "train.sample_every=2"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2
    cfg = load_config("dinovq", [*CPU, f"run_dir={tmp_path / 'task'}", f"data.root={root}", "data.synthetic=false"])
    task = DinoVQTask(cfg, torch.device("cpu"))
    assert task.store is not None and task.teacher is None and len(task.store) == 4
    names = ["000001.jpg", "000002.jpg"]
    frames = torch.stack([torch.from_numpy(load_frame(root / n, (64, 64)).copy()) for n in names])[:, None]
    (x, feats), n = task.prepare_batch((frames, [str(root / n) for n in names]), 0)  # a loader batch
    assert n == 2
    torch.testing.assert_close(feats, teacher(x), atol=2e-2, rtol=1e-2)  # fp16 shards
    task.train()
    assert torch.isfinite(task.training_step((x, feats), 0)["train/total_loss"])
    with pytest.raises(TeacherUnavailableError, match="no precomputed DINO features for image"):
        task.prepare_batch((frames, [str(root / "elsewhere.jpg")] * 2), 1)


def test_missing_teacher_names_the_options(tmp_path):
    from vqfast.data.synthetic import make_images
    make_images(tmp_path / "real", num_images=2, size=64)
    cfg = _cfg("dinovq", tmp_path, f"data.root={tmp_path / 'real'}", "data.synthetic=false")
    with pytest.raises(TeacherUnavailableError) as info:
        DinoVQTask(cfg, torch.device("cpu"))
    msg = str(info.value)
    for option in ("dino_features", "dinov2_hub", "timm", "random"):
        assert option in msg
