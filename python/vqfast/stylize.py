"""``python -m vqfast.stylize --ckpt STAGE2 --content IMG_OR_DIR --style IMG --out DIR``: QuantArt inference.

Loads a stage-2 training checkpoint written by ``python -m vqfast.train`` (its resolved config is inside), encodes
each content image and the style image with the frozen stage-1 parts, runs the SGA module, decodes, and writes
``DIR/<content stem>_stylised.png`` (plus ``_grid.png`` = content | style | stylised with ``--grid``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from vqfast.errors import CheckpointError, DataNotFoundError, VQFastError

log = logging.getLogger("vqfast")


class StylizeError(VQFastError, ValueError):
    """Bad --ckpt / --content / --style argument (message names the value and what is expected)."""


def load_stage2(path: str | Path, device: str | torch.device = "cpu"):
    """(StyleTransfer in eval mode, data config dict) from a vqfast stage-2 training checkpoint (file or run dir)."""
    from vqfast.train.config import schema
    from vqfast.train.engine import checkpoint
    from vqfast.train.families.quantart.config import Stage2ModelConfig
    from vqfast.train.families.quantart.models import build_stage2_model

    payload = checkpoint.load_latest(path)  # CheckpointError naming the file when missing or unreadable
    if payload.get("task") != "quantart_stage2" or "config" not in payload:
        raise StylizeError(f"--ckpt {payload['path']!r} is not a QuantArt stage-2 training checkpoint "
                           f"(task={payload.get('task')!r}; expected 'quantart_stage2')")
    raw = yaml.safe_load(payload["config"])
    model_cfg = schema.build(Stage2ModelConfig, raw["model"], f"{payload['path']} (embedded config)")
    model = build_stage2_model(model_cfg, raw.get("backend", "auto"), load_checkpoints=False)
    try:
        model.load_state_dict(payload["modules"]["model"], strict=True)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"--ckpt {payload['path']!r}: the stage-2 weights do not match its config: "
                              f"{str(exc).splitlines()[0][:300]}") from exc
    return model.to(device).eval(), raw.get("data", {})


def _images(arg: str, what: str) -> list[Path]:
    from vqfast.loaders.clips import list_images

    p = Path(arg)
    if p.is_dir():
        try:
            return list_images(p)
        except DataNotFoundError as exc:
            raise StylizeError(f"{what} {arg!r}: {exc}") from exc
    if not p.is_file():
        raise StylizeError(f"{what} {arg!r} is neither an image file nor a folder of images")
    return [p]


def _to_input(arr: np.ndarray, mean, std, device) -> torch.Tensor:
    from vqfast.loaders import frames_to_model_input

    frames = torch.from_numpy(np.array(arr))[None, None]  # (1, 1, H, W, 3) uint8
    return frames_to_model_input(frames, mean, std).to(device)  # (1, 3, H, W)


def stylize(ckpt: str, content: str, style: str, out: str, *, size: int | None = None, device: str = "cpu",
            batch_size: int = 4, grid: bool = False) -> list[Path]:
    from vqfast.loaders.clips import load_frame
    from vqfast.train.engine.samples import grid as rows_grid
    from vqfast.train.engine.samples import save_png, to_uint8

    model, data = load_stage2(ckpt, device)
    size = int(size or data.get("size", 256))
    mean, std = data.get("mean", [0.5, 0.5, 0.5]), data.get("std", [0.5, 0.5, 0.5])
    styles = _images(style, "--style")
    if len(styles) != 1:
        raise StylizeError(f"--style {style!r}: give one style image (found {len(styles)})")
    contents = _images(content, "--content")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref = _to_input(load_frame(styles[0], (size, size)), mean, std, device)  # (1, 3, H, W)
    written = []
    with torch.no_grad():
        for i in range(0, len(contents), batch_size):
            paths = contents[i:i + batch_size]
            x = torch.cat([_to_input(load_frame(p, (size, size)), mean, std, device) for p in paths])  # (b, 3, H, W)
            refs = ref.expand(x.shape[0], -1, -1, -1)
            y = model(x, refs).float()  # (b, 3, H, W)
            images = to_uint8(y, mean, std).cpu()  # (b, 3, H, W) uint8
            for j, p in enumerate(paths):
                target = out_dir / f"{p.stem}_stylised.png"
                Image.fromarray(images[j].permute(1, 2, 0).numpy()).save(target)
                written.append(target)
                if grid:
                    g = rows_grid(x[j:j + 1], refs[j:j + 1], y[j:j + 1], mean=mean, std=std)
                    save_png(g, out_dir / f"{p.stem}_grid.png")
    log.info("stylised %d image(s) with %s into %s", len(written), styles[0], out_dir)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vqfast.stylize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="stage-2 checkpoint (last.pt) or its run directory")
    p.add_argument("--content", required=True, help="content image or folder of images")
    p.add_argument("--style", required=True, help="style image")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=None, help="square size images are resized/cropped to "
                                                          "(default: the training data.size)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grid", action="store_true", help="also write content | style | stylised grids")
    args = p.parse_args(argv)
    logger = logging.getLogger("vqfast")
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
    logger.setLevel(logging.INFO)
    try:
        written = stylize(args.ckpt, args.content, args.style, args.out, size=args.size, device=args.device,
                          batch_size=args.batch_size, grid=args.grid)
    except VQFastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
