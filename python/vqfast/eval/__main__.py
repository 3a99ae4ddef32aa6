"""``python -m vqfast.eval --ckpt CKPT_OR_RUN_DIR --data DIR [--size 256] [--metrics rfid,psnr,ssim,lpips,usage]
[--inception PATH] [--lpips-backbone PATH] [--limit N] [--out FILE.json]``: reconstruction metrics of a tokenizer.

The model comes from a vqfast training checkpoint (a file or a run directory: the newest loadable checkpoint, its
embedded resolved config rebuilt with the family's own builders) or, with ``--config``, from a taming checkpoint
(``model.ckpt_path``) plus a vqfast config. Families that reconstruct: VQGAN, EMA-VQ, VQ-VAE, VQ-VAE-2 (bottom-level
codes for usage), QuantArt stage 1, DinoVQ. ``--data``: a folder of images, or of video-frame folders (every frame
evaluated). Writes the JSON to ``--out`` atomically (and a markdown table next to it, ``.md``), prints the markdown.
Under torchrun each rank evaluates ``images[rank::world]`` and the statistics are all-reduced (gloo on CPU).

This module sits at the ``tools`` layer (it imports ``vqfast.train`` to rebuild models; the rest of
``vqfast.eval`` does not).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import yaml

from vqfast.errors import CheckpointError, VQFastError
from vqfast.eval.data import PREPROCESS, iterate_batches, list_eval_images
from vqfast.eval.evaluator import METRICS, ReconstructionEvaluator, evaluate_model, parse_metrics
from vqfast.eval.inception import INCEPTION_SHA256
from vqfast.eval.metrics import EvalError

log = logging.getLogger("vqfast")
RECONSTRUCTING = ("vq", "quantart_stage1", "dinovq")


def _without_external_files(raw: dict) -> dict:
    """The embedded config minus the files the builders would read again (taming init, stage-1 quantizer,
    LPIPS inside DinoVQ's loss): the checkpoint's own weights replace them."""
    model = dict(raw.get("model") or {})
    for key in ("ckpt_path", "ckpt_quantize"):
        if model.get(key) is not None:
            model[key] = None
    if "use_perceptual" in model:
        model["use_perceptual"] = False
    return dict(raw, model=model)


def build_model(cfg):
    """The family's own builder for a resolved config (no task, no loss, no optimizer)."""
    from vqfast.train.families import family_of

    family = family_of(cfg).name
    if family == "vq":
        from vqfast.train.families.vq.models import build_model as build
        return build(cfg.model, cfg.backend)
    if family == "quantart_stage1":
        from vqfast.train.families.quantart.models import build_stage1_model
        return build_stage1_model(cfg.model, cfg.backend)
    if family == "dinovq":
        from vqfast.train.families.dinovq.model import build_dinovq
        return build_dinovq(cfg.model, cfg.backend)
    raise EvalError(f"family {family!r} does not reconstruct images; evaluable families: {', '.join(RECONSTRUCTING)}")


def load_tokenizer(ckpt: str | os.PathLike, config: Optional[str] = None):
    """(model in eval mode on CPU, resolved config) from a vqfast checkpoint / run dir, or a taming checkpoint
    with ``config`` (a vqfast config file or shipped name)."""
    from vqfast.train.engine import checkpoint
    from vqfast.train.families import build_config, load_config

    if config is not None:
        cfg = load_config(config, [f"model.ckpt_path={Path(ckpt).resolve()}"])
        if not hasattr(cfg.model, "ckpt_path"):
            raise EvalError(f"--config {config!r}: model.type={cfg.model.type!r} has no taming checkpoint loading "
                            "(model.ckpt_path); give a vqfast checkpoint without --config instead")
        return build_model(cfg).eval(), cfg
    payload = checkpoint.load_latest(ckpt)
    if "config" not in payload:
        raise CheckpointError(f"--ckpt {payload['path']!r} has no embedded config")
    raw = _without_external_files(yaml.safe_load(payload["config"]))
    cfg = build_config(raw, f"{payload['path']} (embedded config)")
    model = build_model(cfg)
    try:
        model.load_state_dict(payload["modules"]["model"], strict=True)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"--ckpt {payload['path']!r}: the weights do not match the embedded config: "
                              f"{str(exc).splitlines()[0][:300]}") from exc
    return model.eval(), cfg


def markdown(result: dict) -> str:
    keys = [k for k in ("rfid", "psnr", "ssim", "lpips", "usage", "perplexity", "entropy", "images") if k in result]
    fmt = {"rfid": "{:.4f}", "psnr": "{:.3f}", "ssim": "{:.4f}", "lpips": "{:.4f}", "usage": "{:.2%}",
           "perplexity": "{:.1f}", "entropy": "{:.4f}", "images": "{:d}"}
    head = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n"
    return head + "| " + " | ".join(fmt[k].format(result[k]) for k in keys) + " |\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _distributed() -> tuple[int, int, bool]:
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return 0, 1, False
    import torch.distributed as dist

    if torch.cuda.is_available():  # before NCCL starts: each rank on its own GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def evaluate(args: argparse.Namespace) -> dict:
    rank, world, distributed = _distributed()
    device = torch.device(args.device or (f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available()
                                          else "cpu"))
    metrics = parse_metrics(args.metrics)
    model, cfg = load_tokenizer(args.ckpt, args.config)
    model.to(device)
    d = cfg.data
    size = int(args.size or d.size)
    paths = list_eval_images(args.data, args.limit)
    sha = None if args.inception_sha256.lower() == "none" else args.inception_sha256
    evaluator = ReconstructionEvaluator(metrics, device=device, num_codes=model.vocab_size, inception=args.inception,
                                        inception_sha256=sha, inception_mode=args.inception_mode,
                                        lpips_net=args.lpips_net, lpips_backbone=args.lpips_backbone,
                                        fid_method=args.fid_method)
    batches = iterate_batches(paths, size=size, batch_size=args.batch_size, preprocess=args.preprocess, rank=rank,
                              world_size=world, num_threads=args.num_threads)
    t0 = time.perf_counter()
    result = evaluate_model(model, batches, evaluator, mean=d.mean, std=d.std, device=device)
    elapsed = time.perf_counter() - t0
    result.update(images_per_s=result["images"] / elapsed, seconds=elapsed, world_size=world,
                  checkpoint=str(args.ckpt), data=str(args.data), size=size, preprocess=args.preprocess,
                  family=type(model).__name__, codebook_size=int(model.vocab_size),
                  inception_mode=args.inception_mode if "rfid" in metrics else None,
                  lpips_net=args.lpips_net if "lpips" in metrics else None)
    if distributed:
        import torch.distributed as dist

        dist.barrier()
    return result if rank == 0 else {}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vqfast.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="vqfast checkpoint or run directory (or a taming .ckpt with --config)")
    p.add_argument("--data", required=True, help="folder of images, or of video-frame folders")
    p.add_argument("--config", default=None, help="vqfast config for a taming --ckpt (model.ckpt_path)")
    p.add_argument("--size", type=int, default=None, help="square evaluation size (default: the run's data.size)")
    p.add_argument("--metrics", default=",".join(METRICS), help=f"comma list of {','.join(METRICS)}")
    p.add_argument("--inception", default=None, help="FID Inception weights (default: the torch hub cache)")
    p.add_argument("--inception-sha256", default=INCEPTION_SHA256,
                   help="expected sha256 of --inception; 'none' skips the check (test weights only)")
    p.add_argument("--inception-mode", default="torch-fidelity", choices=("torch-fidelity", "pytorch-fid"),
                   help="whose resize/scaling to reproduce")
    p.add_argument("--fid-method", default="eig", choices=("eig", "sqrtm"),
                   help="tr sqrt(S1 S2) as torch-fidelity (eig) or pytorch-fid (scipy sqrtm)")
    p.add_argument("--lpips-net", default="vgg", choices=("vgg", "alex"))
    p.add_argument("--lpips-backbone", default=None,
                   help="torchvision backbone file (default: the torch hub cache); 'random': smoke tests only")
    p.add_argument("--preprocess", default="train", choices=PREPROCESS,
                   help="train: the training loaders' resize + centre crop; imagenet: ADM box/bicubic centre crop")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-threads", type=int, default=4, help="image decoding threads")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="JSON result file (written atomically; markdown next to it)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logger = logging.getLogger("vqfast")
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
    logger.setLevel(logging.INFO)
    try:
        if args.limit is not None and args.limit < 1:
            raise EvalError(f"--limit {args.limit}: must be ≥ 1")
        result = evaluate(args)
        if result:
            if args.out:
                out = Path(args.out)
                write_atomic(out, json.dumps(result, indent=2) + "\n")
                write_atomic(out.with_suffix(".md"), markdown(result))
            print(markdown(result), end="")
    except VQFastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
