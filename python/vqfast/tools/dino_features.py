"""Precompute DINO teacher features for DinoVQ: ``python -m vqfast.tools.dino_features --root DIR ...``.

Writes fp16 shards ``DIR/dino_features/shard_00000.pt`` ({"names", "features" (N, h, w, D), "teacher",
"image_size"}) for every image of DIR, resized/cropped to ``--size`` like the training loaders, on the
tokenizer's patch grid (``--size / --patch-size``). Teachers: a local DINOv2 clone (``--teacher dinov2_hub
--hub-dir --checkpoint``), a timm model (``--teacher timm --timm-model --checkpoint``), or ``random`` (tests).
``--generate N`` first writes N synthetic textured-shape images into DIR.
"""
from __future__ import annotations

import argparse
import logging
import sys

from vqfast.data.dino import (
    TeacherUnavailableError,
    build_teacher,
    write_feature_shards,
)

log = logging.getLogger("vqfast")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vqfast.tools.dino_features", description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="folder of images; shards go to ROOT/dino_features")
    p.add_argument("--teacher", choices=("dinov2_hub", "timm", "random"), required=True)
    p.add_argument("--size", type=int, default=224, help="image size the tokenizer trains at (model.img_size)")
    p.add_argument("--patch-size", type=int, default=16, help="tokenizer patch size: the feature grid is size/patch")
    p.add_argument("--hub-dir", help="local clone of facebookresearch/dinov2 (hubconf.py)")
    p.add_argument("--hub-model", default="dinov2_vitb14")
    p.add_argument("--timm-model")
    p.add_argument("--checkpoint", help="teacher weights file")
    p.add_argument("--random-dim", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mean", type=float, nargs=3, default=(0.5, 0.5, 0.5), help="training data.mean")
    p.add_argument("--std", type=float, nargs=3, default=(0.5, 0.5, 0.5), help="training data.std")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-size", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument("--generate", type=int, default=0, metavar="N", help="first generate N synthetic images")
    p.add_argument("--overwrite", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.size % args.patch_size:
        log.error("--size %d is not divisible by --patch-size %d", args.size, args.patch_size)
        return 2
    grid = (args.size // args.patch_size,) * 2
    if args.generate:
        from vqfast.data.synthetic import make_images
        make_images(args.root, num_images=args.generate, size=args.size, seed=args.seed)
    try:
        teacher = build_teacher(args.teacher, img_size=(args.size, args.size), grid=grid, hub_dir=args.hub_dir,
                                hub_model=args.hub_model, timm_model=args.timm_model, checkpoint=args.checkpoint,
                                input_mean=args.mean, input_std=args.std, random_dim=args.random_dim,
                                seed=args.seed)
        shards = write_feature_shards(args.root, teacher, size=args.size, batch_size=args.batch_size,
                                      shard_size=args.shard_size, mean=args.mean, std=args.std,
                                      device=args.device, overwrite=args.overwrite)
    except (TeacherUnavailableError, FileNotFoundError, FileExistsError) as exc:
        log.error("%s", exc)
        return 2
    print(f"wrote {len(shards)} shard(s) under {shards[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
