"""StarGANLatentTask on generated shards (CPU): seed 003's step, logging, schedules, conditioning, samples,
exact resume and the safetensors export."""
import math

import pytest
import torch
from sg_helpers import tiny_config
from torch.testing import assert_close

from vqfast.data.latents import domain_statistics
from vqfast.errors import WeightsNotFoundError
from vqfast.train.families.stargan.task import LOG_KEYS, StarGANLatentTask


def _task(tmp_path, seed=0, **sections):
    cfg = tiny_config(**sections)
    StarGANLatentTask.prepare_data(cfg, tmp_path)
    torch.manual_seed(seed)
    task = StarGANLatentTask(cfg, "cpu")
    task.build_loader(batch_size=cfg.train.batch_size)
    return task


def _run(task, steps, start=0):
    logs, step, epoch = [], start, start // task.steps_per_epoch
    while step < start + steps:
        task.loader.set_epoch(epoch)
        for batch in task.loader:
            logs.append(task.training_step(task.prepare_batch(batch, step)[0], step))
            step += 1
            if step >= start + steps:
                break
        epoch += 1
    return logs


@pytest.mark.parametrize("loader", ["rust", "torch"])
def test_steps_finite_all_keys_optimizers_stepped(tmp_path, loader):
    if loader == "rust":
        pytest.importorskip("vqfast.io")
    task = _task(tmp_path, data={"loader": loader})
    assert type(task.loader).__name__ == ("LatentShardLoader" if loader == "rust" else "TorchLatentShardLoader")
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in task.modules().items()}
    logs = _run(task, 3)
    assert set(LOG_KEYS) == set(logs[-1]) and {"d_loss", "g_loss", "g_adv", "sty", "ds", "cyc", "id", "r1"} <= set(logs[0])
    for step_logs in logs:
        for k, v in step_logs.items():
            assert v.dim() == 0 and not v.requires_grad and math.isfinite(float(v)), k
    assert 0.5 < float(logs[0]["d_loss"]) < 4.0          # hinge without ½ starts near 2
    for name, opt in task.optimizers().items():
        steps = {int(s["step"]) for s in opt.state.values()}
        assert steps == {3}, name
    for k, m in task.modules().items():
        changed = any(not torch.equal(a, b) for a, b in zip(before[k], m.parameters(), strict=True))
        assert changed, f"{k} parameters did not move"


def test_d_frozen_during_g_step_and_its_grads_untouched(tmp_path):
    task = _task(tmp_path)
    D = task.nets.discriminator
    seen = {}

    def record_d(opt, args, kwargs):
        seen["d_grads"] = [p.grad.clone() for p in D.parameters()]

    def record_g(opt, args, kwargs):
        seen["frozen"] = [not p.requires_grad for p in D.parameters()]

    task.opt_d.register_step_pre_hook(record_d)
    task.opt_g.register_step_pre_hook(record_g)
    _run(task, 1)
    assert all(seen["frozen"])
    assert all(p.requires_grad for p in D.parameters())               # unfrozen again after the step
    for g_before, p in zip(seen["d_grads"], D.parameters(), strict=True):
        assert_close(p.grad, g_before)                                 # the G backward added nothing to D


def test_identity_logged_zero_when_w_id_zero(tmp_path):
    off = _run(_task(tmp_path / "a", loss={"w_id": 0.0}), 1)[0]
    on = _run(_task(tmp_path / "b", loss={"w_id": 1.0}), 1)[0]
    assert float(off["id"]) == 0.0 and float(on["id"]) > 0.0


def test_r1_only_on_interval_steps_and_lambda_ds_per_epoch(tmp_path):
    task = _task(tmp_path, loss={"r1_interval": 2, "ds_decay_epochs": 1, "w_ds": 2.0})
    spe = task.steps_per_epoch                                          # 24 latents / 4 = 6
    assert spe == 6
    logs = _run(task, spe + 2)
    for step, entry in enumerate(logs):
        k = step % spe + 1                                               # 1-based batch index in the epoch
        assert (float(entry["r1"]) > 0) == (k % 2 == 0), step
        assert float(entry["lambda_ds"]) == (2.0 if step < spe else 0.0), step
    task_global = _task(tmp_path / "g", loss={"r1_interval": 4, "r1_counter": "global"})
    assert [task_global.is_r1_step(s) for s in range(8)] == [False, False, False, True] * 2


def test_reusing_d_phase_forwards_equals_recomputing(tmp_path):
    results = []
    for reuse in (True, False):
        task = _task(tmp_path / str(reuse), seed=5, training={"reuse_d_phase_forwards": reuse})
        torch.manual_seed(11)
        results.append(_run(task, 2))
    for a, b in zip(*results, strict=True):
        for k in LOG_KEYS:
            assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)


def test_bce_r1_half_ema_iteration_options_run(tmp_path):
    task = _task(tmp_path, model={"ema": True, "init": "he"},
                 loss={"gan_loss": "bce", "r1_half": True, "ds_schedule": "iteration", "ds_iter": 4,
                       "ds_detach_second": True})
    logs = _run(task, 2)
    assert float(logs[0]["d_loss"]) == pytest.approx(2 * math.log(2), abs=1.0)
    assert float(logs[1]["lambda_ds"]) == pytest.approx(0.75)
    assert "G_ema" in task.modules()


def test_generator_conditioning_moves_toward_target_domain(tmp_path):
    """After a short CPU run, translating content to another domain moves its per-channel means toward that domain's
    statistics, and the outputs for the two targets differ."""
    task = _task(tmp_path, seed=0, training={"lr_g": 1e-3, "lr_d": 1e-3, "lr_mapping": 1e-4},
                 loss={"r1_interval": 4, "w_r1": 1.0, "w_ds": 0.0},
                 data={"resolution": 8, "synthetic_per_domain": 32}, train={"batch_size": 8})
    _run(task, 60)
    means = domain_statistics(2, 4, task.cfg.seed)[0] * task.cfg.training.latent_scale   # (D, C) scaled
    batch, _ = task.prepare_batch(next(iter(task.loader)), 0)
    content, y_src = batch["content"], batch["y_src"]
    outs = []
    for d in range(2):
        y = torch.full_like(y_src, d)
        out = task.translate(content, y, x_ref=task.pool.draw(y) * task.cfg.training.latent_scale)
        outs.append(out.mean(dim=(2, 3)))                                                   # (B, C)
        cross = y_src != d
        assert cross.any()
        to_target_out = (outs[-1][cross] - means[d]).abs().mean()
        to_target_in = (content.mean(dim=(2, 3))[cross] - means[d]).abs().mean()
        assert to_target_out < 0.7 * to_target_in, (d, float(to_target_out), float(to_target_in))
    assert (outs[0] - outs[1]).abs().mean() > 0.05


def test_sample_png_latent_visualisation(tmp_path, caplog):
    from PIL import Image

    with caplog.at_level("INFO", logger="vqfast"):
        task = _task(tmp_path, visualization={"num_samples": 3})
        assert task.sample(tmp_path, 7, None) == {}
    path = tmp_path / "samples" / "step_00000007.png"
    assert "latent-channel visualisations" in caplog.text
    with Image.open(path) as im:
        w, h = im.size
    assert w == 3 * (32 + 2) + 2 and h == (1 + 3 * 2) * (32 + 2) + 2        # 2×2 channel tiles of 16²


def test_vae_path_that_does_not_load_is_an_error_before_training(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="diffusers|does not exist"):
        _task(tmp_path, visualization={"vae_path": str(tmp_path / "no_vae")})


def test_resume_continues_exactly(tmp_path):
    """5 straight steps == 2 steps + resume for 3 (content loader position, reference pool, target RNG, R1
    interval, optimizers): bit-identical networks."""
    import torch

    from vqfast.train import load_config, train

    common = ["train.log_every=1", "train.ckpt_every=2", "train.sample_every=1000", "loss.r1_interval=2"]
    cfg_a = load_config("stargan_v2_latent", [f"run_dir={tmp_path / 'a'}", *common, "train.max_steps=5"])
    train(cfg_a)
    root = cfg_a.data.root
    train(load_config("stargan_v2_latent", [f"run_dir={tmp_path / 'b'}", *common, "train.max_steps=2",
                                            f"data.root={root}"]))
    train(load_config("stargan_v2_latent", [f"run_dir={tmp_path / 'b'}", *common, "train.max_steps=5",
                                            f"data.root={root}"]),
          resume=str(tmp_path / "b" / "checkpoints" / "last.pt"))
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 5
    assert a["modules"].keys() == b["modules"].keys()
    for group, state in a["modules"].items():
        for k, v in state.items():
            torch.testing.assert_close(b["modules"][group][k], v, rtol=0, atol=0, msg=f"{group}.{k}")


def test_export_safetensors_writes_every_network(tmp_path):
    from vqfast.train import load_config, train
    from vqfast.train.engine.export import load_safetensors

    run = tmp_path / "x"
    train(load_config("stargan_v2_latent", [f"run_dir={run}", "train.max_steps=1", "train.export_safetensors=true",
                                            "model.ema=true"]))
    st = load_safetensors(run / "model.safetensors")
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    for prefix, module in (("generator.", "G"), ("style_encoder.", "E"), ("mapping.", "F"),
                           ("discriminator.", "D"), ("generator_ema.", "G_ema")):
        weights = {k.removeprefix(prefix): v for k, v in st.items() if k.startswith(prefix)}
        assert weights.keys() == ck["modules"][module].keys(), module
        for k, v in weights.items():
            torch.testing.assert_close(v, ck["modules"][module][k], rtol=0, atol=0)
