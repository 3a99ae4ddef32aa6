"""Every reconstructing family loads back from a vqfast checkpoint (the family's own builder, weights strict) and
evaluates; the non-reconstructing families are refused with a clear error."""
import json

import pytest
import torch
from eval_helpers import write_images

from vqfast.eval.__main__ import main
from vqfast.train.config import to_yaml
from vqfast.train.engine import checkpoint
from vqfast.train.families import family_of, load_config

CONFIGS = ["quickstart", "emavq_f16_1024", "vqvae_256", "vqvae2_256", "quantart_stage1", "dinovq_fast"]


def _checkpoint(tmp_path, name):
    from vqfast.eval.__main__ import build_model

    cfg = load_config(name, [f"run_dir={tmp_path / 'run'}"])  # CPU: the shipped cpu_overrides shrink it
    torch.manual_seed(0)
    model = build_model(cfg)
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"task": family_of(cfg).name, "config": to_yaml(cfg), "step": 0,
                           "modules": {"model": model.state_dict()}})
    return path, cfg, model


@pytest.mark.parametrize("name", CONFIGS)
def test_family_checkpoint_evaluates(tmp_path, name):
    path, cfg, model = _checkpoint(tmp_path, name)
    write_images(tmp_path / "images", 2, cfg.data.size + 8, seed=0)
    out = tmp_path / "r.json"
    assert main(["--ckpt", str(path), "--data", str(tmp_path / "images"), "--metrics", "psnr,ssim,usage",
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["images"] == 2 and res["codebook_size"] == model.vocab_size and res["size"] == cfg.data.size
    assert 0 < res["usage"] <= 1 and res["psnr"] > 0


def test_non_reconstructing_family_is_refused(tmp_path, capsys):
    cfg = load_config("quantart_stage2", [f"run_dir={tmp_path / 'run'}"])
    path = tmp_path / "s2.pt"
    checkpoint.save(path, {"task": "quantart_stage2", "config": to_yaml(cfg), "modules": {"model": {}}})
    write_images(tmp_path / "images", 1, 32, seed=0)
    assert main(["--ckpt", str(path), "--data", str(tmp_path / "images"), "--metrics", "psnr"]) == 2
    assert "does not reconstruct" in capsys.readouterr().err
