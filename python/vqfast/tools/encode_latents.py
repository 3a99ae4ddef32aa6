"""Encode image folders (one per domain) into latent shards with a local Stable-Diffusion VAE.

    python -m vqfast.tools.encode_latents --vae /path/to/stable-diffusion-v1-5 --out shards/ \
        --domain photo=data/photo --domain monet=data/monet [--size 256] [--shard-size 1024]
    python -m vqfast.tools.encode_latents --vae PATH --out shards/ data/   # sub-folders of data/ are the domains

Writes ``shard_XXXXX.pt`` files ``{"latents": float32 N×4×(size/8)×(size/8) UNSCALED, "labels": int64 N}``
(train with ``training.latent_scale`` 0.18215) and ``domains.json`` (label id → name, image counts).
Needs ``pip install diffusers`` and the VAE weights on local disk (it never downloads).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from vqfast.errors import VQFastError
from vqfast.loaders.clips import IMAGE_EXTS, load_frame

log = logging.getLogger("vqfast")

class EncodeError(VQFastError, ValueError):
    """Bad input folders / arguments for encode_latents."""


def find_domains(root: Optional[str], domain_args: Sequence[str]) -> list[tuple[str, Path]]:
    """(name, folder) pairs from ``--domain NAME=FOLDER`` or the sub-folders of ``root`` (sorted)."""
    pairs: list[tuple[str, Path]] = []
    for item in domain_args:
        if "=" not in item:
            raise EncodeError(f"--domain {item!r}: expected NAME=FOLDER")
        name, folder = item.split("=", 1)
        pairs.append((name, Path(folder)))
    if root is not None:
        base = Path(root)
        if not base.is_dir():
            raise EncodeError(f"{root!r} is not a directory")
        pairs += [(p.name, p) for p in sorted(base.iterdir()) if p.is_dir()]
    if len(pairs) < 1:
        raise EncodeError("no domains: give ROOT with one sub-folder per domain, or --domain NAME=FOLDER")
    for name, folder in pairs:
        if not folder.is_dir():
            raise EncodeError(f"domain {name!r}: {str(folder)!r} is not a directory")
    return pairs


def list_images(folder: Path) -> list[Path]:
    """Every image under ``folder``, sub-folders included, in path order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS)


def load_image(path: Path, size: int) -> torch.Tensor:
    """RGB, shorter side → size (bicubic), centre crop, [-1, 1] float (3, size, size)."""
    arr = load_frame(path, (size, size)).astype(np.float32) / 127.5 - 1.0   # (size, size, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()                # (3, size, size)


def encode_folders(vae, domains: list[tuple[str, Path]], out: Path, *, size: int = 256, batch_size: int = 8,
                   shard_size: int = 1024, mode: str = "mean", device: torch.device | str = "cpu",
                   seed: int = 0) -> list[Path]:
    """Encode every image of every domain; returns the shard paths. ``vae`` is a diffusers AutoencoderKL."""
    if size % 8:
        raise EncodeError(f"--size {size} must be a multiple of 8 (the VAE downsamples by 8)")
    if mode not in ("mean", "sample"):
        raise EncodeError(f"--mode {mode!r}; allowed: 'mean', 'sample'")
    out.mkdir(parents=True, exist_ok=True)
    items = [(path, label) for label, (_, folder) in enumerate(domains) for path in list_images(folder)]
    counts = {name: 0 for name, _ in domains}
    for _, label in items:
        counts[domains[label][0]] += 1
    empty = [name for name, c in counts.items() if c == 0]
    if empty:
        raise EncodeError(f"domain(s) {empty} hold no images ({', '.join(IMAGE_EXTS)})")
    gen = torch.Generator(device=device).manual_seed(seed)
    param = next(vae.parameters())
    latents: list[torch.Tensor] = []
    labels: list[int] = []
    shards: list[Path] = []

    def flush():
        if latents:
            path = out / f"shard_{len(shards):05d}.pt"
            torch.save({"latents": torch.cat(latents).contiguous(), "labels": torch.tensor(labels, dtype=torch.int64)},
                       path)
            shards.append(path)
            latents.clear()
            labels.clear()

    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        x = torch.stack([load_image(p, size) for p, _ in chunk]).to(device, param.dtype)   # (b, 3, size, size)
        with torch.no_grad():
            dist = vae.encode(x).latent_dist
            z = dist.mean if mode == "mean" else dist.sample(generator=gen)                 # (b, 4, size/8, size/8)
        latents.append(z.float().cpu())
        labels.extend(label for _, label in chunk)
        if sum(t.shape[0] for t in latents) >= shard_size:
            flush()
        log.info("encoded %d/%d images", min(start + batch_size, len(items)), len(items))
    flush()
    (out / "domains.json").write_text(json.dumps({"domains": [name for name, _ in domains], "counts": counts,
                                                  "size": size, "scaled": False, "mode": mode}, indent=1))
    log.info("wrote %d shards (%d latents, domains %s) to %s", len(shards), len(items), counts, out)
    return shards


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vqfast.tools.encode_latents",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=None, help="folder whose sub-folders are the domains")
    ap.add_argument("--domain", action="append", default=[], help="NAME=FOLDER (repeatable; label ids in order)")
    ap.add_argument("--vae", required=True, help="local diffusers AutoencoderKL folder (e.g. an SD-1.5 snapshot)")
    ap.add_argument("--vae-subfolder", default="vae")
    ap.add_argument("--out", required=True, help="output folder for the shards")
    ap.add_argument("--size", type=int, default=256, help="image size (latents are size/8)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--shard-size", type=int, default=1024, help="latents per shard")
    ap.add_argument("--mode", choices=("mean", "sample"), default="mean", help="latent_dist mean or a sample")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from vqfast.models.sd_vae import VAEUnavailableError, load_local_vae

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    try:
        domains = find_domains(args.root, args.domain)
        vae = load_local_vae(args.vae, args.vae_subfolder, device)
        encode_folders(vae, domains, Path(args.out), size=args.size, batch_size=args.batch_size,
                       shard_size=args.shard_size, mode=args.mode, device=device, seed=args.seed)
    except (EncodeError, VAEUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
