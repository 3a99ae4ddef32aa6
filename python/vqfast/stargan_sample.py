"""``python -m vqfast.stargan_sample --ckpt CKPT --out DIR [--config CFG] [--data ROOT] ...``: reference- and
latent-guided translation with a trained latent StarGAN v2 (seed 003), written as PNG grids.

``--ckpt``: a vqfast checkpoint (``last.pt``, or its run directory; config and EMA nets taken from it) or a
seed-003 checkpoint (``{epoch, G, F, E, D, opt_g, opt_d, config}``, e.g. the original ``ckpt/latest.pt``; its
embedded config gives the model). ``--config`` (a vqfast YAML or the seed-003 YAML) overrides the checkpoint's.

Latents come from ``--data`` (per-domain folders ``ROOT/<domain>/<file>.pt|.npy``, or vqfast latent shards),
default the config's data root; domains in the config's order. Writes into ``--out``:
- ``reference_guided.png``: seed 003's evaluation grid — header row: one reference per target domain; then per
  source domain its content latent followed by its translation to every target domain with that reference's
  style (the diagonal shows the content itself).
- ``latent_guided.png``: one row per content: the content, then ``--num-styles`` translations per target domain
  with styles F(z, y) from seeded noise.
- ``translations.pt``: the scaled translated latents ``{"reference": (N, N, C, H, W), "latent": (N, D, S, C, H,
  W), "domains": [...]}``.
Cells are decoded through the SD VAE when ``--vae`` (or the config's ``visualization.vae_path``) names a local
diffusers folder, else latent-channel visualisations. Exit 2 on any problem the user can fix.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import yaml

from vqfast.data.latents import DomainFolderLatents, build_latent_loader, list_shards
from vqfast.errors import CheckpointError, ConfigError, VQFastError
from vqfast.train.config import schema
from vqfast.train.engine import checkpoint as ckpt_io
from vqfast.train.engine.samples import save_png, tile_rows
from vqfast.train.families.stargan.config import StarGANModelConfig
from vqfast.train.families.stargan.original import translate_model as original_model
from vqfast.train.families.stargan.samples import SampleRenderer
from vqfast.train.families.stargan.task import build_nets, load_original_nets

log = logging.getLogger("vqfast")


@dataclass
class Setup:
    model: StarGANModelConfig
    backend: str
    latent_scale: float
    domains: list[str]
    data_root: Optional[str]
    layout: str
    vae_path: Optional[str]
    vae_subfolder: Optional[str]


def _from_vqfast_config(cfg) -> Setup:
    return Setup(cfg.model, cfg.backend, cfg.training.latent_scale, cfg.domain_names(), cfg.data.root,
                 cfg.data.layout, cfg.visualization.vae_path, cfg.visualization.vae_subfolder)


def _from_resolved_yaml(text: str, where: str) -> Setup:
    raw = yaml.safe_load(text)
    model = schema.build(StarGANModelConfig, raw["model"], f"{where} (model)")
    domains = list(raw["data"].get("domains") or []) or [f"domain_{i}" for i in range(model.num_domains)]
    vis = raw.get("visualization", {})
    return Setup(model, raw.get("backend", "auto"), float(raw["training"]["latent_scale"]), domains,
                 raw["data"].get("root"), raw["data"].get("layout", "shards"), vis.get("vae_path"),
                 vis.get("vae_subfolder", "vae"))


def _from_original_payload(config: dict, where: str) -> Setup:
    out, errors = {"model": {}}, []
    original_model(dict(config.get("model") or {}), out, errors)
    if errors:
        raise ConfigError(f"{where} (embedded seed-003 config): " + "; ".join(errors))
    model = schema.build(StarGANModelConfig, out["model"], f"{where} (model)")
    data, vis = config.get("data") or {}, config.get("visualization") or {}
    vae = vis.get("vae_model_name_or_path")
    return Setup(model, "auto", float((config.get("training") or {}).get("latent_scale", 0.18215)),
                 list(data.get("domains") or []), data.get("data_root", data.get("root_dir")), "domain_folders",
                 vae if vae and Path(vae).is_dir() else None, vis.get("vae_subfolder", "vae"))


def load(ckpt: str, config: Optional[str], device) -> tuple[Setup, torch.nn.Module]:
    """(setup, LatentStarGAN with the checkpoint's weights, eval mode)."""
    path = Path(ckpt)
    if path.is_dir() or (path.is_file() and _is_vqfast(path)):
        obj = ckpt_io.load_latest(path)
        setup = _setup(config) or _from_resolved_yaml(obj["config"], obj["path"])
        nets = build_nets(setup.model, setup.backend, device)
        mods = obj["modules"]
        for key, attr in (("G", "generator"), ("E", "style_encoder"), ("F", "mapping"), ("D", "discriminator"),
                          ("G_ema", "generator_ema"), ("E_ema", "style_encoder_ema"), ("F_ema", "mapping_ema")):
            if (key in mods) != (getattr(nets, attr) is not None):
                raise CheckpointError(f"{obj['path']}: module {key!r} present={key in mods} but the config's model "
                                      f"has it={getattr(nets, attr) is not None} (model.ema?)")
            if key in mods:
                getattr(nets, attr).load_state_dict(mods[key], strict=True)
        log.info("loaded vqfast checkpoint %s (step %s)", obj["path"], obj.get("step"))
    else:
        if not path.is_file():
            raise CheckpointError(f"--ckpt {ckpt!r} does not exist")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"--ckpt {ckpt!r} cannot be read ({type(exc).__name__}: {exc})") from exc
        embedded = obj.get("config") if isinstance(obj, dict) else None
        setup = _setup(config) or (_from_original_payload(embedded, ckpt) if isinstance(embedded, dict) else None)
        if setup is None:
            raise ConfigError(f"--ckpt {ckpt!r} embeds no config: give --config")
        nets = build_nets(setup.model, setup.backend, device)
        load_original_nets(nets, obj, f"--ckpt {ckpt!r}")
        log.info("loaded seed-003 checkpoint %s (epoch %s)", ckpt, obj.get("epoch"))
    return setup, nets.eval()


def _is_vqfast(path: Path) -> bool:
    try:
        ckpt_io.load(path)
    except CheckpointError:
        return False
    return True


def _setup(config: Optional[str]) -> Optional[Setup]:
    if config is None:
        return None
    from vqfast.train import load_config
    cfg = load_config(config)
    if cfg.model.type != "stargan_v2_latent":
        raise ConfigError(f"--config {config}: model.type={cfg.model.type!r} is not the latent StarGAN")
    return _from_vqfast_config(cfg)


def domain_latents(setup: Setup, root: Optional[str], need: int, reader: str = "auto") -> list[torch.Tensor]:
    """Per domain, its first ``need`` latents (unscaled, (n, C, H, W)) in file / shard order."""
    root = root or setup.data_root
    if root is None:
        raise ConfigError("no latents: give --data (per-domain folders or latent shards)")
    if not setup.domains:
        raise ConfigError("the config names no data.domains: give --config with data.domains")
    if Path(root).is_dir() and all((Path(root) / d).is_dir() for d in setup.domains):
        return [t[:need] for t in DomainFolderLatents(root, setup.domains, batch_size=1, reader=reader).tensors]
    found: list[list[torch.Tensor]] = [[] for _ in setup.domains]
    loader = build_latent_loader(list_shards(root), loader=reader if reader != "auto" else "auto", batch_size=64,
                                 shuffle=False, drop_last=False, prefetch=1)
    for batch in loader:
        for x, y in zip(batch["latents"], batch["labels"].tolist(), strict=True):
            if 0 <= y < len(found) and len(found[y]) < need:
                found[y].append(x)
        if all(len(f) >= need for f in found):
            break
    empty = [setup.domains[i] for i, f in enumerate(found) if not f]
    if empty:
        raise ConfigError(f"--data {root!r}: no latents of domain(s) {empty}")
    return [torch.stack(f) for f in found]


@torch.no_grad()
def translate_grids(nets, setup: Setup, latents: list[torch.Tensor], *, ref_index: int = 0, num_styles: int = 3,
                    seed: int = 0, device="cpu") -> dict:
    """Scaled translations: reference-guided (src, trg, C, H, W) and latent-guided (src, trg, S, C, H, W)."""
    G, E, F_ = nets.sampling_nets()
    scale, n = setup.latent_scale, len(latents)
    content = torch.stack([t[0] for t in latents]).to(device) * scale                        # (N, C, H, W)
    refs = torch.stack([t[ref_index % len(t)] for t in latents]).to(device) * scale         # (N, C, H, W)
    ref = torch.empty((n, n, *content.shape[1:]), device=device)
    lat = torch.empty((n, n, num_styles, *content.shape[1:]), device=device)
    g = torch.Generator().manual_seed(seed)
    for j in range(n):
        y = torch.full((n,), j, dtype=torch.long, device=device)
        ref[:, j] = G(content, E(refs[j:j + 1], y[:1]).expand(n, -1))
        for k in range(num_styles):
            z = torch.randn(1, setup.model.latent_dim, generator=g).to(device)
            lat[:, j, k] = G(content, F_(z, y[:1]).expand(n, -1))
    for i in range(n):  # seed 003's grid shows the content itself on the diagonal
        ref[i, i] = content[i]
    return {"content": content, "refs": refs, "reference": ref, "latent": lat}


def write_grids(out: dict, renderer: SampleRenderer, out_dir: Path, domains: list[str]) -> list[Path]:
    n = out["content"].shape[0]
    content_img, ref_img = renderer(out["content"]), renderer(out["refs"])                   # (N, 3, h, w) uint8
    blank = torch.zeros_like(content_img[:1])
    rows = [torch.cat([blank, ref_img])]
    for i in range(n):
        rows.append(torch.cat([content_img[i:i + 1], renderer(out["reference"][i])]))
    paths = [out_dir / "reference_guided.png", out_dir / "latent_guided.png", out_dir / "translations.pt"]
    save_png(tile_rows(rows), paths[0])
    lat = out["latent"]                                                                      # (N, N, S, C, H, W)
    rows = [torch.cat([content_img[i:i + 1], renderer(lat[i].flatten(0, 1))]) for i in range(n)]
    save_png(tile_rows(rows), paths[1])
    torch.save({"reference": out["reference"].cpu(), "latent": lat.cpu(), "domains": list(domains)}, paths[2])
    return paths


def run(args) -> list[Path]:
    device = torch.device(args.device)
    setup, nets = load(args.ckpt, args.config, device)
    latents = domain_latents(setup, args.data, need=args.ref_index + 1, reader=args.loader)
    out = translate_grids(nets, setup, latents, ref_index=args.ref_index, num_styles=args.num_styles,
                          seed=args.seed, device=device)
    vae = args.vae or setup.vae_path
    renderer = SampleRenderer(vae, args.vae_subfolder or setup.vae_subfolder, setup.latent_scale, device)
    paths = write_grids(out, renderer, Path(args.out), setup.domains)
    log.info("wrote %s (%s; domains %s)", ", ".join(map(str, paths)), renderer.kind, ", ".join(setup.domains))
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vqfast.stargan_sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="vqfast checkpoint / run directory, or a seed-003 checkpoint")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", default=None, help="vqfast or seed-003 config (default: the checkpoint's)")
    p.add_argument("--data", default=None, help="per-domain latent folders or latent shards (default: config's)")
    p.add_argument("--ref-index", type=int, default=0, help="which latent of each domain is its reference")
    p.add_argument("--num-styles", type=int, default=3, help="latent-guided styles per target domain")
    p.add_argument("--seed", type=int, default=0, help="noise seed of the latent-guided styles")
    p.add_argument("--vae", default=None, help="local diffusers AutoencoderKL folder (decoded grids)")
    p.add_argument("--vae-subfolder", default=None)
    p.add_argument("--loader", default="auto", choices=("auto", "rust", "torch"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    logger = logging.getLogger("vqfast")
    handler = None
    if not logger.handlers:
        handler = logging.StreamHandler()
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        if args.ref_index < 0 or args.num_styles < 1:
            raise ConfigError("--ref-index must be >= 0 and --num-styles >= 1")
        paths = run(args)
    except VQFastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if handler is not None:
            logger.removeHandler(handler)
    print("\n".join(str(x) for x in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
