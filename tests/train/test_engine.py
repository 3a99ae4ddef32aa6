"""Engine: run-dir outputs, the Task contract, exact resume, run-directory safety, log-window means, and
user-caused failures ending in one line and exit 2."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from vqfast.errors import CheckpointError, DataError, RunDirError
from vqfast.train import load_config, train, trainer
from vqfast.train.__main__ import main
from vqfast.train.engine.export import load_safetensors
from vqfast.train.engine.metrics import RunningMeans
from vqfast.train.engine.task import Task
from vqfast.train.families import FAMILIES

TINY_VQGAN = ["model.ddconfig.ch=32", "model.ddconfig.ch_mult=[1,2]", "model.ddconfig.num_res_blocks=1",
              "model.ddconfig.attn_resolutions=[]", "model.ddconfig.z_channels=16", "data.size=16",
              "model.n_embed=32", "model.embed_dim=8", "loss.disc_num_layers=1", "loss.disc_ndf=8",
              "perceptual.backbone=random", "data.clip_len=2", "train.batch_size=2", "data.synthetic_videos=3",
              "data.synthetic_frames=4", "train.progress=false"]


def _run(tmp_path, name, extra):
    run_dir = tmp_path / name
    cfg = load_config(name, [f"run_dir={run_dir}", *extra])
    return cfg, train(cfg), run_dir


def _lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_every_family_task_satisfies_the_task_contract():
    hooks = {n for n in vars(Task) if not n.startswith("_")} | set(Task.__annotations__)
    assert {"prepare_data", "build_loader", "prepare_batch", "training_step", "sample", "export_state"} <= hooks
    for family in FAMILIES:
        missing = sorted(n for n in hooks if not hasattr(family.task_cls, n))
        assert not missing, f"{family.name}: {missing}"


def test_run_dir_contents(tmp_path):
    cfg, last, run_dir = _run(tmp_path, "quickstart", TINY_VQGAN + [
        "train.max_steps=4", "train.log_every=2", "train.sample_every=2", "train.ckpt_every=2",
        "loss.disc_start=1", "loss.disc_train_start=1", "loss.adaptive_weight_before_start=true",
        "train.export_safetensors=true"])
    resolved = (run_dir / "config.yaml").read_text()
    assert str(run_dir / "data" / "train") in resolved  # generated data.root recorded
    train_lines = [line for line in _lines(run_dir) if "train/total_loss" in line]
    assert [line["step"] for line in train_lines] == [2, 4]
    for key in ["train/total_loss", "train/quant_loss", "train/nll_loss", "train/rec_loss", "train/p_loss",
                "train/d_weight", "train/disc_factor", "train/g_loss", "train/disc_loss", "train/logits_real",
                "train/logits_fake", "lr", "lr_disc", "samples_per_s", "codebook/usage", "data/skipped_items"]:
        assert key in train_lines[-1], key
    assert any("val/psnr" in line for line in _lines(run_dir))
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


def test_cli_two_steps_and_one_line_errors(tmp_path, capsys):
    rc = main(["--config", "quickstart", "--set", f"run_dir={tmp_path / 'cli'}", "train.max_steps=1", *TINY_VQGAN])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and out["step"] == 1 and out["run_dir"] == str(tmp_path / "cli") and "val/psnr" in out
    assert main(["--config", "quickstart", "--set", "train.max_stepz=1", "data.sizee=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.max_stepz" in err and "data.sizee" in err


def test_d_phase_scalars_are_means_over_the_steps_that_ran_a_d_phase(tmp_path):
    means = RunningMeans()
    means.add({"g": torch.tensor(1.0), "d": torch.tensor(6.0)})
    means.add({"g": torch.tensor(3.0)})
    means.add({"g": torch.tensor(5.0)})
    assert means.pop() == {"g": 3.0, "d": 6.0} and means.steps == 0
    # through the engine: disc_every=3, one log window of 3 steps holding one D step
    run = tmp_path / "d3"
    cfg = load_config("quickstart", [f"run_dir={run}", *TINY_VQGAN, "train.max_steps=3", "train.log_every=3",
                                     "train.disc_every=3", "loss.disc_start=0", "loss.disc_train_start=0",
                                     "train.sample_every=100"])
    run_ = trainer(cfg)
    seen = []
    inner = run_.task.discriminator_step

    def spy(chunks, recons, step):
        logs = inner(chunks, recons, step)
        seen.append(float(logs["train/disc_loss"]))
        return logs

    run_.task.discriminator_step = spy
    last = run_.fit()
    assert len(seen) == 1 and last["train/disc_loss"] == pytest.approx(seen[0], rel=1e-6)


@pytest.mark.parametrize("model_set", [[], ["model.type=emavq"]])
def test_resume_continues_exactly(tmp_path, model_set):
    common = TINY_VQGAN + model_set + ["train.log_every=1", "train.ckpt_every=2", "train.sample_every=100",
                                       "loss.disc_start=1", "loss.disc_train_start=0", "train.disc_every=2",
                                       "data.synthetic_videos=2", "train.scheduler=exponential",
                                       "train.lr_decay_every=1", "train.lr_decay=0.9"]
    cfg_a = load_config("quickstart", [f"run_dir={tmp_path / 'a'}", *common, "train.max_steps=5"])
    train(cfg_a)
    data = [f"data.root={cfg_a.data.root}", f"data.val_root={cfg_a.data.val_root}"]
    train(load_config("quickstart", [f"run_dir={tmp_path / 'b'}", *common, "train.max_steps=2", *data]))
    cfg_b2 = load_config("quickstart", [f"run_dir={tmp_path / 'b'}", *common, "train.max_steps=5", *data])
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
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a CheckpointError and a FileNotFoundError
        train(cfg, resume=str(tmp_path / "missing.pt"))
    train(cfg)
    cfg2 = load_config("quickstart", [f"run_dir={tmp_path / 'r2'}", *TINY_VQGAN, "model.n_embed=16",
                                      "train.max_steps=2"])
    with pytest.raises(CheckpointError, match="does not match"):
        train(cfg2, resume=str(tmp_path / "r" / "checkpoints" / "last.pt"))


# ---- run directory safety ---------------------------------------------------------------------------------
def test_fresh_run_never_overwrites_a_run(tmp_path, capsys):
    run = tmp_path / "keep"
    args = ["--config", "quickstart", "--set", f"run_dir={run}", *TINY_VQGAN, "train.max_steps=3",
            "train.sample_every=100"]
    assert main(args) == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(args[:-2] + ["train.max_steps=1"]) == 2  # the same command again, shorter: refused
    err = capsys.readouterr().err
    assert "already holds a run" in err and f"--resume {run}" in err and "train.overwrite" in err
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    assert main(args[:-2] + ["train.max_steps=1", "train.overwrite=true"]) == 0  # explicit: start over
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 1
    assert [line["step"] for line in _lines(run) if "train/total_loss" in line] == [1]


def test_a_second_process_on_a_locked_run_dir_exits_2_naming_the_holder(tmp_path):
    run = tmp_path / "locked"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "vqfast.train", "--config", "quickstart", "--set", f"run_dir={run}",
           *TINY_VQGAN, "train.max_steps=100000", "train.sample_every=100000", "train.ckpt_every=100000"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not (run / "metrics.jsonl").exists() and not (run / "train.log").exists():
            assert first.poll() is None, first.stderr.read()[-2000:]
            assert time.time() - t0 < 120
            time.sleep(0.05)
        second = subprocess.run(cmd[:-3] + ["train.max_steps=1", "--resume", str(run)], env=env,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert "in use by another vqfast run" in second.stderr and f"pid {first.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1 and "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.wait(timeout=120)
        first.stderr.close()
    assert first.returncode == 0  # SIGTERM: checkpoint written, clean exit


# ---- user-caused failures: one clear line, exit 2 ----------------------------------------------------------
def _cli_error(capsys, *sets):
    rc = main(["--config", "quickstart", "--set", *TINY_VQGAN, "train.max_steps=1", *sets])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in err.splitlines()) == 1, err  # one line (after INFO lines)
    return err.splitlines()[-1]


def test_user_errors_end_in_one_line_and_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "data.root" in _cli_error(capsys, f"run_dir={tmp_path / 'a'}", f"data.root={empty}")
    assert "is not a directory" in _cli_error(capsys, f"run_dir={tmp_path / 'b'}", f"data.root={tmp_path / 'no'}")
    cfg = load_config("quickstart", [f"run_dir={tmp_path / 'gen'}", *TINY_VQGAN, "train.max_steps=1"])
    train(cfg)
    data = [f"data.root={cfg.data.root}", f"data.val_root={cfg.data.val_root}"]
    assert "no full batch" in _cli_error(capsys, f"run_dir={tmp_path / 'c'}", *data, "train.batch_size=64")
    video = sorted((tmp_path / "gen" / "data" / "val").iterdir())[0]
    for frame in video.iterdir():
        frame.write_bytes(b"not an image")  # corrupt frames in the held-out batch
    err = _cli_error(capsys, f"run_dir={tmp_path / 'd'}", *data)
    assert "data.val_root" in err and video.name in err


def test_loader_rust_without_the_extension_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from vqfast.train.engine import data as engine_data

    monkeypatch.setattr(engine_data, "_rust_io", lambda: None)  # an install without vqfast._io
    assert "data.loader=rust but the vqfast._io extension" in _cli_error(capsys, f"run_dir={tmp_path}",
                                                                         "data.loader=rust")
    with pytest.raises(DataError):
        engine_data.loader_class(type("Data", (), {"loader": "rust"})())


def test_run_dir_claim_is_exclusive_in_process(tmp_path):
    from vqfast.train.engine import rundir

    lock = rundir.claim(tmp_path / "x", resume=False, overwrite=False)
    try:
        with pytest.raises(RunDirError, match="in use"):
            rundir.claim(tmp_path / "x", resume=True, overwrite=False)
    finally:
        lock.release()
    rundir.claim(tmp_path / "x", resume=True, overwrite=False).release()
