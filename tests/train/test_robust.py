"""Never lose a run: durable atomic checkpoints, fallback past bad ones, non-finite steps skipped,
SIGTERM checkpoints and exits 0, SIGKILL + --resume RUN_DIR gives bit-identical weights."""
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vqfast.errors import CheckpointError, ConfigError, FrameDecodeError, NonFiniteError
from vqfast.train import load_config, train
from vqfast.train import trainer as Trainer
from vqfast.train.engine import checkpoint as ckpt

TINY = ["model.ddconfig.ch=16", "model.ddconfig.ch_mult=[1,2]", "model.ddconfig.num_res_blocks=1",
        "model.ddconfig.attn_resolutions=[]", "model.ddconfig.z_channels=8",
        "data.size=16", "model.n_embed=16", "model.embed_dim=8", "loss.disc_num_layers=1", "loss.disc_ndf=8",
        "perceptual.backbone=random", "data.clip_len=2", "train.batch_size=2", "data.synthetic_videos=4",
        "data.synthetic_frames=4", "train.progress=false"]
# EMA-VQ with D trained (BatchNorm), LR schedule, adaptive weight: everything a resume must restore
RESUME = TINY + ["model.type=emavq", "train.log_every=1", "train.sample_every=1000", "loss.disc_start=1",
                 "loss.disc_train_start=0", "train.disc_every=1", "train.scheduler=exponential",
                 "train.lr_decay_every=1", "train.lr_decay=0.9"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _cfg(run_dir, *extra):
    return load_config("quickstart", [f"run_dir={run_dir}", *TINY, *extra])


def _cli(run_dir, *extra, resume=None):
    cmd = [sys.executable, "-m", "vqfast.train", "--config", "quickstart", "--set", f"run_dir={run_dir}"]
    for kv in (*RESUME, *extra):
        cmd += ["--set", kv]
    if resume:
        cmd += ["--resume", str(resume)]
    return cmd


def _weights(path):
    return torch.load(path, weights_only=True)


def _assert_bit_identical(a, b):
    assert a["step"] == b["step"]
    for group in a["modules"]:
        for k, v in a["modules"][group].items():
            torch.testing.assert_close(b["modules"][group][k], v, rtol=0, atol=0, msg=f"{group}.{k}")
    for name, opt in a["optimizers"].items():
        for pid, st in opt["state"].items():
            for k, v in st.items():
                torch.testing.assert_close(b["optimizers"][name]["state"][pid][k], v, rtol=0, atol=0)
    assert a["schedulers"] == b["schedulers"]


# ---- atomic writes, keep-last-K, fallback -------------------------------------------------------------
def test_save_is_fsynced_atomic_and_prunes(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(ckpt.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    d = tmp_path / "checkpoints"
    for step in range(1, 6):
        ckpt.save(d / "last.pt", {"step": step})
        ckpt.link_or_copy(d / "last.pt", d / f"step_{step:08d}.pt")
        ckpt.prune(d, keep=2)
    assert len(synced) >= 10  # file + folder per write
    assert sorted(p.name for p in d.iterdir()) == ["last.pt", "step_00000004.pt", "step_00000005.pt"]
    assert ckpt.load(d / "step_00000004.pt")["step"] == 4 and ckpt.load(d / "last.pt")["step"] == 5
    (d / ".last.pt.tmp999999999").write_bytes(b"torn")  # left by a crashed writer (pid gone)
    ckpt.prune(d, keep=2)
    assert not list(d.glob(".*tmp*"))


def test_resume_run_dir_falls_back_past_corrupt_checkpoint(tmp_path, caplog):
    run = tmp_path / "r"
    train(_cfg(run, "train.max_steps=3", "train.ckpt_every=1", "train.keep_checkpoints=3",
               "train.sample_every=100"))
    d = run / "checkpoints"
    (d / "last.pt").write_bytes((d / "last.pt").read_bytes()[:200])  # truncated (same file as step_3)
    with pytest.raises(CheckpointError, match="corrupt"):
        ckpt.load(d / "last.pt")
    with caplog.at_level(logging.WARNING, logger="vqfast"):
        obj = ckpt.load_latest(run)
    assert obj["step"] == 2 and obj["path"].endswith("step_00000002.pt")
    assert "fell back" in caplog.text and "last.pt" in caplog.text
    last = train(_cfg(run, "train.max_steps=4", "train.ckpt_every=1", "train.sample_every=100"), resume=str(run))
    assert last["step"] == 4
    for p in d.glob("*.pt"):
        p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        ckpt.load_latest(run)


# ---- non-finite steps -----------------------------------------------------------------------------------
def _poison(trainer, bad_steps):
    """The generator loss becomes NaN at the given steps (a stand-in for a diverging run)."""
    inner = trainer.task.loss.generator_loss

    def generator_loss(vq_loss, x, recon, step, **kw):
        loss, part = inner(vq_loss, x, recon, step, **kw)
        if step in bad_steps:
            loss = loss * float("nan")
            part = dict(part, **{"train/total_loss": part["train/total_loss"] * float("nan")})
        return loss, part

    trainer.task.loss.generator_loss = generator_loss


def test_nonfinite_step_is_skipped_and_logged(tmp_path, caplog):
    cfg = _cfg(tmp_path / "nf", "model.type=emavq", "train.max_steps=3", "train.log_every=3",
               "train.sample_every=100", "loss.disc_start=0", "loss.disc_train_start=0")
    trainer = Trainer(cfg)
    _poison(trainer, {1})
    before = {}

    def state():
        out = {k: v.clone() for k, v in trainer.task.model.state_dict().items()}
        out.update({f"D.{k}": v.clone() for k, v in trainer.task.discriminator.state_dict().items()})
        out.update({f"opt.{k}": v for k, v in trainer.task.opt_ae.state_dict()["state"][0].items()})
        return out

    def snapshot(batch, step, _inner=trainer.task.training_step):
        if step == 1:
            before.update(state())
        if step == 2:  # after the skipped step 1: no parameter, EMA codebook, BN statistic or Adam moment moved
            for k, v in state().items():
                torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=k)
        return _inner(batch, step)

    trainer.task.training_step = snapshot
    with caplog.at_level(logging.WARNING, logger="vqfast"):
        last = trainer.fit()
    assert before, "step 1 never ran"
    assert "step 1: non-finite loss term(s) train/total_loss, train/aeloss in opt_ae" in caplog.text
    assert last["train/skipped_steps"] == 1 and last["train/skipped_steps_total"] == 1
    assert all(v == v for k, v in last.items() if isinstance(v, float) and k.startswith("train/"))  # no NaN


def test_too_many_bad_steps_stop_with_clear_message(tmp_path):
    cfg = _cfg(tmp_path / "nf2", "train.max_steps=10", "train.max_bad_steps=2", "train.sample_every=100")
    trainer = Trainer(cfg)
    _poison(trainer, set(range(1, 10)))
    with pytest.raises(NonFiniteError, match=r"2 consecutive steps .*max_bad_steps=2.*step 2"):
        trainer.fit()


# ---- signals ----------------------------------------------------------------------------------------------
def _wait_for(path: Path, proc, timeout=120.0):
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early (rc {proc.returncode}): {proc.stderr.read()[-3000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def test_sigterm_finishes_step_checkpoints_and_exits_zero(tmp_path):
    run = tmp_path / "term"
    proc = subprocess.Popen(_cli(run, "train.max_steps=100000", "train.ckpt_every=2"), env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(run / "checkpoints" / "step_00000002.pt", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "received SIGTERM" in err and "stopped by signal" in err
    last = ckpt.load(run / "checkpoints" / "last.pt")
    assert last["step"] >= 2
    assert json.loads(out.strip().splitlines()[-1])["step"] == last["step"]


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    n = 6
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_cli(straight, f"train.max_steps={n}", f"train.ckpt_every={n // 2}"), env=ENV, check=True,
                   capture_output=True, timeout=300)
    data = [f"data.root={straight / 'data' / 'train'}", f"data.val_root={straight / 'data' / 'val'}"]
    # the killed run would go on for ever: it dies by SIGKILL right after its step-N/2 checkpoint
    proc = subprocess.Popen(_cli(killed, "train.max_steps=100000", f"train.ckpt_every={n // 2}", *data), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(killed / "checkpoints" / f"step_{n // 2:08d}.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert ckpt.load_latest(killed)["step"] in (n // 2,)  # killed before it reached step N
    res = subprocess.run(_cli(killed, f"train.max_steps={n}", f"train.ckpt_every={n // 2}", *data, resume=killed),
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _weights(straight / "checkpoints" / "last.pt"), _weights(killed / "checkpoints" / "last.pt")
    _assert_bit_identical(a, b)
    for k in ("quantize.embedding.cluster_size", "quantize.embedding.embed_avg", "quantize.steps_unused",
              "quantize.usage_ema"):
        assert k in a["modules"]["model"], k  # EMA and codebook-health buffers are part of the comparison


# ---- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loader", ["python", "rust"])
def test_data_on_error_skip_counts_and_raise_names_the_file(tmp_path, loader):
    """One clip per video per epoch (both loaders): a video whose frames are all corrupt fails every epoch."""
    base = [f"data.loader={loader}", "train.max_steps=2", "train.log_every=2", "train.sample_every=100"]
    cfg = _cfg(tmp_path / "ok", *base)
    train(cfg)
    video = sorted(Path(cfg.data.root).iterdir())[1]
    for frame in video.iterdir():
        frame.write_bytes(b"not a jpeg")  # corrupt frames
    data = [f"data.root={cfg.data.root}", f"data.val_root={cfg.data.val_root}"]
    # 4 videos, batch 2: 2 steps per epoch, so 4 steps visit the bad video twice
    last = train(_cfg(tmp_path / "skip", *base, *data, "data.on_error=skip", "train.max_steps=4",
                      "train.log_every=4"))
    assert last["step"] == 4 and last["data/skipped_items"] == 2
    with pytest.raises(FrameDecodeError, match=video.name):
        train(_cfg(tmp_path / "raise", *base, *data, "data.on_error=raise", "train.max_steps=4"))
    with pytest.raises(ConfigError, match="data.on_error"):
        _cfg(tmp_path / "x", "data.on_error=ignore")
