"""``python -m vqfast.stylize --ckpt STAGE2 --content IMG_OR_DIR --style IMG --out DIR``: QuantArt inference.

Loads a stage-2 training checkpoint written by ``python -m vqfast.train`` (its resolved config is inside) or,
with ``--config`` (QuantArt's stage-2 YAML, or a vqfast one), a QuantArt Lightning ``.ckpt``; encodes each
content image and the style image with the frozen stage-1 parts, runs the SGA module, decodes, and writes
``DIR/<content stem>_stylised.png`` (plus ``_grid.png`` = content | style | stylised with ``--grid``).

Fidelity control (QuantArt paper §3.4; codebyrpp/QuantArt ``inference.py``): with ``--beta`` (style fidelity)
the latent is ⊕β(ẑ_y, ẑ_c) = β·ẑ_y + (1−β)·ẑ_c; with ``--alpha`` (visual fidelity) and a continuous stage-2
model (``--ckpt-continuous``, ``model.variant: continuous``) it is ⊕α(⊕β(ẑ_y, ẑ_c), ⊕β(z_y, z_c)) decoded by
the decoder ⊕α(D̂, D) whose weights are α·D̂ + (1−α)·D (``decoder`` and ``post_quant_conv``). α = β = 1 (the
defaults) is plain QuantArt.
"""
from __future__ import annotations

import argparse
import copy
import logging
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml
from PIL import Image

from vqfast.errors import CheckpointError, DataNotFoundError, VQFastError

log = logging.getLogger("vqfast")


class StylizeError(VQFastError, ValueError):
    """Bad --ckpt / --content / --style argument (message names the value and what is expected)."""


def load_stage2(path: str | Path, device: str | torch.device = "cpu", config: Optional[str] = None):
    """(StyleTransfer in eval mode, data config dict) from a vqfast stage-2 training checkpoint (file or run dir)
    or, with ``config`` (a QuantArt stage-2 YAML or a vqfast stage-2 config file), from a QuantArt Lightning
    ``.ckpt`` (or any whole stage-2 checkpoint) built as that config says."""
    from vqfast.train.config import schema
    from vqfast.train.engine import checkpoint
    from vqfast.train.families.quantart.config import Stage2ModelConfig
    from vqfast.train.families.quantart.models import build_stage2_model

    if config is not None:
        return _load_with_config(path, config, device)
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


def _load_with_config(path, config: str, device):
    from vqfast.models.quantart import read_stage2_state_dicts
    from vqfast.train.config import schema, sources
    from vqfast.train.families import read_raw
    from vqfast.train.families.quantart.config import Stage2ModelConfig
    from vqfast.train.families.quantart.models import build_stage2_model

    where = str(sources.resolve_config_path(config))
    raw = read_raw(Path(where))  # QuantArt's layout translated; a vqfast file as it is
    model_raw = dict(raw.get("model") or {})
    if model_raw.get("type") != "quantart_stage2":
        raise StylizeError(f"--config {config!r} is not a QuantArt stage-2 config (model.type="
                           f"{model_raw.get('type')!r})")
    for key in ("style_root", "val_style_root", "checkpoint_encoder", "checkpoint_decoder", "ckpt_path"):
        model_raw.pop(key, None)  # paths of training, not of this inference: the weights come from --ckpt
    model_cfg = schema.build(Stage2ModelConfig, model_raw, where)
    model = build_stage2_model(model_cfg, raw.get("backend", "auto"), load_checkpoints=False)
    model.load_stage2(read_stage2_state_dicts(path, "--ckpt")[0], path, "--ckpt")
    data = dict(raw.get("data") or {})
    return model.to(device).eval(), {k: data[k] for k in ("size", "mean", "std") if k in data}


def fused_decoder(discrete, continuous, alpha: float):
    """⊕α(D̂, D): a copy of the discrete model whose ``decoder`` and ``post_quant_conv`` weights are
    α·D̂ + (1−α)·D (codebyrpp/QuantArt inference.py ``fuse_models``)."""
    if alpha == 1.0 or continuous is None:
        return discrete
    if alpha == 0.0:
        return continuous
    fused = copy.deepcopy(discrete)
    for name in ("decoder", "post_quant_conv"):
        mine, theirs = getattr(fused, name).state_dict(), getattr(continuous, name).state_dict()
        getattr(fused, name).load_state_dict({k: torch.lerp(theirs[k].float(), v.float(), alpha).to(v.dtype)
                                              if v.is_floating_point() else v for k, v in mine.items()})
    return fused


@torch.no_grad()
def fidelity_latent(discrete, continuous, x: torch.Tensor, ref: torch.Tensor, alpha: float, beta: float
                    ) -> torch.Tensor:
    """z = ⊕α(⊕β(ẑ_y, ẑ_c), ⊕β(z_y, z_c)) with ⊕p(a, b) = p·a + (1−p)·b (QuantArt paper eq. 10): ẑ from the
    quantised model, z from the continuous one (None when α = 1)."""
    quant_c, quant_y = discrete.transfer(x, ref)[:2]  # ẑ_c, ẑ_y (B, D, h, w)
    z = beta * quant_y + (1 - beta) * quant_c
    if continuous is not None and alpha != 1.0:
        cont_c, cont_y = continuous.transfer(x, ref)[:2]  # z_c, z_y: un-quantised
        z = alpha * z + (1 - alpha) * (beta * cont_y + (1 - beta) * cont_c)
    return z


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


def _fidelity_models(ckpt, config, ckpt_continuous, config_continuous, alpha, beta, device):
    for name, v in (("--alpha", alpha), ("--beta", beta)):
        if not 0.0 <= v <= 1.0:
            raise StylizeError(f"{name}={v}: must be in [0, 1]")
    model, data = load_stage2(ckpt, device, config)
    continuous = None
    if ckpt_continuous is not None:
        continuous = load_stage2(ckpt_continuous, device, config_continuous)[0]
        if continuous.variant != "continuous" or model.variant != "quantized":
            raise StylizeError(f"--ckpt-continuous needs a continuous stage-2 model (got variant "
                               f"{continuous.variant!r}) and --ckpt a quantised one (got {model.variant!r})")
    elif alpha != 1.0:
        raise StylizeError(f"--alpha={alpha} mixes in a continuous stage-2 model: give it with --ckpt-continuous")
    return model, continuous, data


def stylize(ckpt: str, content: str, style: str, out: str, *, size: int | None = None, device: str = "cpu",
            batch_size: int = 4, grid: bool = False, config: Optional[str] = None,
            ckpt_continuous: Optional[str] = None, config_continuous: Optional[str] = None, alpha: float = 1.0,
            beta: float = 1.0) -> list[Path]:
    from vqfast.loaders.clips import load_frame
    from vqfast.train.engine.samples import grid as rows_grid
    from vqfast.train.engine.samples import save_png, to_uint8

    model, continuous, data = _fidelity_models(ckpt, config, ckpt_continuous, config_continuous, alpha, beta,
                                               device)
    decoder = fused_decoder(model, continuous, alpha)
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
            y = decoder.decode(fidelity_latent(model, continuous, x, refs, alpha, beta)).float()  # (b, 3, H, W)
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
    p.add_argument("--config", default=None, help="QuantArt stage-2 YAML (or vqfast config) that --ckpt was "
                                                  "trained with: needed for a QuantArt .ckpt")
    p.add_argument("--beta", type=float, default=1.0, help="style fidelity β in [0, 1] (1 = plain QuantArt)")
    p.add_argument("--alpha", type=float, default=1.0, help="visual fidelity α in [0, 1]; < 1 needs "
                                                            "--ckpt-continuous")
    p.add_argument("--ckpt-continuous", default=None, help="continuous stage-2 checkpoint for the α fusion")
    p.add_argument("--config-continuous", default=None, help="its config (for a QuantArt .ckpt)")
    args = p.parse_args(argv)
    logger = logging.getLogger("vqfast")
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
    logger.setLevel(logging.INFO)
    try:
        written = stylize(args.ckpt, args.content, args.style, args.out, size=args.size, device=args.device,
                          batch_size=args.batch_size, grid=args.grid, config=args.config,
                          ckpt_continuous=args.ckpt_continuous, config_continuous=args.config_continuous,
                          alpha=args.alpha, beta=args.beta)
    except VQFastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
