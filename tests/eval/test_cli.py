"""``python -m vqfast.eval`` end to end on a quickstart checkpoint from a 2-step ``python -m vqfast.train`` run;
the ``eval:`` training section; a 2-rank gloo evaluation equal to 1 rank."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vqfast.data.synthetic import make_video_folders
from vqfast.eval import GaussianStats, psnr, ssim
from vqfast.eval.__main__ import load_tokenizer, main
from vqfast.eval.data import iterate_batches, list_eval_images
from vqfast.eval.evaluator import reconstruct_and_codes, to_model_input, to_uint8

TINY = ["model.ddconfig.ch=32", "model.ddconfig.ch_mult=[1,2]", "model.ddconfig.num_res_blocks=1",
        "model.ddconfig.attn_resolutions=[]", "model.ddconfig.z_channels=16", "data.size=16", "model.n_embed=32",
        "model.embed_dim=8", "loss.disc_num_layers=1", "loss.disc_ndf=8", "perceptual.backbone=random",
        "data.clip_len=2", "train.batch_size=2", "train.progress=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run dir, frames folder): a quickstart VQGAN trained for 2 steps on generated video-frame folders."""
    from vqfast.train.__main__ import main as train_main

    root = tmp_path_factory.mktemp("eval_cli")
    data = make_video_folders(root / "frames", num_videos=3, num_frames=4, size=24, seed=0)
    run_dir = root / "run"
    assert train_main(["--config", "quickstart", "--set", f"run_dir={run_dir}", "train.max_steps=2",
                       f"data.root={data}", *TINY]) == 0
    return run_dir, data


def _expected(run_dir, data, limit):
    """PSNR / SSIM recomputed directly: the checkpoint's model on the same frames."""
    model, cfg = load_tokenizer(run_dir)
    paths = list_eval_images(data, limit)
    real = torch.cat(list(iterate_batches(paths, size=16, batch_size=64)))
    with torch.no_grad():
        recon, codes = reconstruct_and_codes(model, to_model_input(real, cfg.data.mean, cfg.data.std))
    fake = to_uint8(recon, cfg.data.mean, cfg.data.std)
    return real, fake, codes


def test_cli_end_to_end_on_a_quickstart_checkpoint(run, tmp_path, inception_weights, capsys):
    run_dir, data = run
    out = tmp_path / "res" / "eval.json"
    rc = main(["--ckpt", str(run_dir), "--data", str(data), "--metrics", "rfid,psnr,ssim,lpips,usage",
               "--inception", str(inception_weights), "--inception-sha256", "none", "--lpips-net", "vgg",
               "--lpips-backbone", "random", "--limit", "5", "--batch-size", "2", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["images"] == 5 and res["codebook_size"] == 32 and res["size"] == 16  # every frame of the videos
    real, fake, codes = _expected(run_dir, data, 5)
    # (the model runs in batches of 2 there, of 5 here: float32 convolutions may round a pixel differently)
    assert res["psnr"] == pytest.approx(float(psnr(real / 255.0, fake / 255.0).mean()), rel=1e-4)
    assert res["ssim"] == pytest.approx(float(ssim(real / 255.0, fake / 255.0).mean()), rel=1e-4)
    assert res["usage"] == pytest.approx(codes.unique().numel() / 32)
    assert res["rfid"] > 0 and res["lpips"] >= 0 and res["perplexity"] >= 1
    table = out.with_suffix(".md").read_text()
    assert table.startswith("| rfid | psnr | ssim | lpips | usage |")
    assert table in capsys.readouterr().out
    assert not list(out.parent.glob(".*tmp*"))  # atomic write left no temp file


def test_cli_module_runs_and_errors_are_one_line(run, tmp_path):
    run_dir, data = run
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "python"))
    ok = subprocess.run([sys.executable, "-m", "vqfast.eval", "--ckpt", str(run_dir / "checkpoints" / "last.pt"),
                         "--data", str(data), "--metrics", "psnr,usage", "--limit", "2"],
                        capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("| psnr | usage |")
    hub = tmp_path / "hub"
    missing = subprocess.run([sys.executable, "-m", "vqfast.eval", "--ckpt", str(run_dir), "--data", str(data),
                              "--metrics", "rfid"], capture_output=True, text=True, timeout=300,
                             env=dict(env, TORCH_HOME=str(hub)))
    assert missing.returncode == 2
    assert "pt_inception-2015-12-05-6726825d.pth" in missing.stderr and str(hub) in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_cli_rejects_bad_arguments(run, tmp_path, capsys):
    run_dir, data = run
    assert main(["--ckpt", str(run_dir), "--data", str(data), "--metrics", "psnr,fid"]) == 2
    assert "fid" in capsys.readouterr().err
    assert main(["--ckpt", str(tmp_path / "nothing"), "--data", str(data)]) == 2
    assert main(["--ckpt", str(run_dir), "--data", str(tmp_path)]) == 2
    assert "no images" in capsys.readouterr().err


def test_training_eval_section_logs_val_metrics(tmp_path):
    from vqfast.train import load_config, train

    data = make_video_folders(tmp_path / "frames", num_videos=2, num_frames=4, size=16, seed=1)
    held = make_video_folders(tmp_path / "held", num_videos=1, num_frames=3, size=16, seed=2)
    run_dir = tmp_path / "run"
    cfg = load_config("quickstart", [f"run_dir={run_dir}", f"data.root={data}", *TINY, "train.max_steps=2",
                                     "train.sample_every=2", "eval.metrics=[psnr,ssim,usage]", "eval.every=2",
                                     f"eval.root={held}"])
    train(cfg)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val/ssim" in r]
    assert len(val) == 1 and val[0]["step"] == 2
    assert {"val/psnr", "val/ssim", "val/usage", "val/perplexity"} <= set(val[0])
    assert 0 < val[0]["val/usage"] <= 1
    from vqfast.plot import plot_run

    png = plot_run(run_dir, file="metrics", keys=["val/psnr", "val/ssim", "val/usage"], out=tmp_path / "val.png")
    assert Path(png).stat().st_size > 0
    bad = load_config("quickstart", [f"run_dir={tmp_path / 'bad'}", f"data.root={data}", *TINY,
                                     "eval.metrics=[psnr]", "train.sample_every=3", "eval.every=4",
                                     f"eval.root={held}"])
    from vqfast.errors import ConfigError
    from vqfast.train.families import task_for

    with pytest.raises(ConfigError, match="multiple of train.sample_every"):
        task_for(bad)(bad, torch.device("cpu"))
    with pytest.raises(ConfigError, match="eval.metrics"):
        load_config("quickstart", [f"run_dir={tmp_path / 'bad2'}", "eval.metrics=[fid]"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world, port, argv, feats, out):
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from vqfast.eval import GaussianStats
    from vqfast.eval.__main__ import main as eval_main

    rc = eval_main(argv + (["--out", str(out)] if rank == 0 else []))
    stats = GaussianStats(feats.shape[1])
    stats.update(feats[rank::world])
    stats.all_reduce()
    if rank == 0:
        torch.save({"rc": rc, "stats": stats.mean_cov()}, str(out) + ".stats")
    dist.destroy_process_group()


def test_two_rank_gloo_equals_one_rank(run, tmp_path):
    import torch.multiprocessing as mp

    run_dir, data = run
    argv = ["--ckpt", str(run_dir), "--data", str(data), "--metrics", "psnr,ssim,usage,lpips", "--lpips-net", "vgg",
            "--lpips-backbone", "random", "--limit", "7", "--batch-size", "2"]
    feats = torch.randn(31, 5, generator=torch.Generator().manual_seed(0)) + 3
    mp.spawn(_rank, args=(2, _free_port(), argv, feats, tmp_path / "two.json"), nprocs=2, join=True)
    assert main(argv + ["--out", str(tmp_path / "one.json")]) == 0
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert two["world_size"] == 2 and one["world_size"] == 1 and two["images"] == one["images"] == 7
    for k in ("psnr", "ssim", "usage", "perplexity", "entropy"):  # float64 sums over other shards: rounding only
        assert two[k] == pytest.approx(one[k], rel=1e-9, abs=1e-12), k
    assert two["lpips"] == pytest.approx(one["lpips"], rel=1e-6)  # float32 network on batches of other images
    saved = torch.load(str(tmp_path / "two.json") + ".stats", weights_only=False)
    single = GaussianStats(5)
    single.update(feats)
    for a, b in zip(saved["stats"], single.mean_cov(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_taming_checkpoint_with_its_config(run, tmp_path):
    run_dir, data = run
    payload = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    taming = tmp_path / "last.ckpt"
    torch.save({"state_dict": payload["modules"]["model"], "global_step": 2}, taming)  # taming's Lightning layout
    common = ["--data", str(data), "--metrics", "psnr,usage", "--limit", "3"]
    assert main(["--ckpt", str(taming), "--config", str(run_dir / "config.yaml"), *common,
                 "--out", str(tmp_path / "taming.json")]) == 0
    assert main(["--ckpt", str(run_dir), *common, "--out", str(tmp_path / "vqfast.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("taming", "vqfast"))
    assert a["psnr"] == b["psnr"] and a["usage"] == b["usage"]
