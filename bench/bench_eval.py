"""Images/s of the whole ``vqfast.eval`` pipeline: decode + preprocess (thread pool) → tokenizer forward →
rFID features of originals and reconstructions (FID Inception at 299², TF32 off) + PSNR + SSIM + LPIPS + usage.

Run: ``python bench/bench_eval.py`` (or through pytest: ``pytest bench/bench_eval.py``).
* CUDA: the f16 VQGAN (``vqgan_f16_1024``: K = 1024, 256²), VQFAST_BENCH_EVAL_IMAGES (default 1024) generated PNGs,
  batch 64, every metric; prints the projected time for the 50,000 ImageNet validation images (target ≤ 5 min on
  one H100).
* CPU: the quickstart-sized VQGAN at 64², 16 images (4 with VQFAST_BENCH_QUICK=1), batch 8.
Inception and LPIPS weights: the real files from the torch hub cache when present (sha256 checked), otherwise
randomly initialised ones with the same architecture (same cost; the values are not FID/LPIPS).
The output is checked: PSNR and usage recomputed directly from one batch agree with the pipeline's.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

CUDA = torch.cuda.is_available()
QUICK = os.environ.get("VQFAST_BENCH_QUICK") == "1"
N = int(os.environ.get("VQFAST_BENCH_EVAL_IMAGES", "1024" if CUDA else ("4" if QUICK else "16")))
SIZE = 256 if CUDA else 64
BATCH = int(os.environ.get("VQFAST_BENCH_EVAL_BATCH", "64" if CUDA else "8"))
METRICS = ("rfid", "psnr", "ssim", "lpips", "usage")


def _images(root: Path, n: int, size: int) -> Path:
    from PIL import Image

    folder = root / f"images_{n}_{size}"
    if (folder / "COMPLETE").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        coarse = rng.uniform(0, 255, size=(8, 8, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((size + 32, size + 16), Image.BICUBIC))
        Image.fromarray(img).save(folder / f"{i:06d}.png")
    (folder / "COMPLETE").touch()
    return folder


def _model():
    from vqfast.eval.__main__ import build_model
    from vqfast.train.families import load_config

    if CUDA:
        cfg = load_config("vqgan_f16_1024", ["perceptual.backbone=random", "data.synthetic=true"])
    else:
        cfg = load_config("quickstart", [f"data.size={SIZE}"])
    return build_model(cfg).eval(), cfg


def _weights(tmp: Path):
    """(inception path, sha256 or None, lpips backbone): real files when cached, else random stand-ins."""
    from vqfast.eval.inception import INCEPTION_SHA256, InceptionWeightsError, find_inception_weights
    from vqfast.eval.lpips_metric import BACKBONE_FILES

    try:
        inception, sha = find_inception_weights(None), INCEPTION_SHA256
    except InceptionWeightsError:
        from vqfast.eval import random_inception_state_dict

        inception, sha = tmp / "random_inception.pth", None
        torch.save(random_inception_state_dict(), inception)
    hub_vgg = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES["vgg"]
    return inception, sha, (str(hub_vgg) if hub_vgg.is_file() else "random")


def run() -> dict:
    from vqfast.eval import codebook_usage, psnr
    from vqfast.eval.data import iterate_batches, list_eval_images
    from vqfast.eval.evaluator import (
        ReconstructionEvaluator,
        evaluate_model,
        reconstruct_and_codes,
        to_model_input,
        to_uint8,
    )

    device = torch.device("cuda" if CUDA else "cpu")
    tmp = Path(os.environ.get("VQFAST_BENCH_EVAL_DIR") or tempfile.gettempdir()) / "vqfast-bench-eval"
    folder = _images(tmp, N, SIZE)
    paths = list_eval_images(folder)
    model, cfg = _model()
    model.to(device)
    inception, sha, backbone = _weights(tmp)
    evaluator = ReconstructionEvaluator(METRICS, device=device, num_codes=model.vocab_size, inception=inception,
                                        inception_sha256=sha, lpips_backbone=backbone)
    mean, std = cfg.data.mean, cfg.data.std
    warm = next(iterate_batches(paths[:BATCH], size=SIZE, batch_size=BATCH))  # warm-up (cuDNN autotune, allocs)
    evaluate_model(model, [warm], evaluator, mean=mean, std=std, device=device)
    evaluator.reset()
    if CUDA:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = evaluate_model(model, iterate_batches(paths, size=SIZE, batch_size=BATCH, num_threads=8), evaluator,
                            mean=mean, std=std, device=device)
    if CUDA:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    # output check: one batch recomputed directly
    real = warm.to(device)
    with torch.no_grad():
        recon, codes = reconstruct_and_codes(model, to_model_input(real, mean, std))
    fake = to_uint8(recon, mean, std)
    evaluator.reset()
    check = evaluate_model(model, [warm], evaluator, mean=mean, std=std, device=device)
    assert abs(check["psnr"] - float(psnr(real / 255.0, fake / 255.0).mean())) < 1e-3 * abs(check["psnr"])
    assert abs(check["usage"] - codebook_usage(codes, model.vocab_size)["usage"]) < 1e-9
    ips = N / elapsed
    out = {"device": torch.cuda.get_device_name() if CUDA else "cpu", "threads": torch.get_num_threads(),
           "model": type(model).__name__, "size": SIZE, "images": N, "batch": BATCH, "seconds": elapsed,
           "images_per_s": ips, "projected_50k_min": 50000 / ips / 60, "real_weights": sha is not None,
           **{k: result[k] for k in METRICS if k in result}}
    return out


def test_eval_pipeline_throughput():
    out = run()
    print(json.dumps(out))
    assert out["images_per_s"] > 0 and np.isfinite(out["rfid"])


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
