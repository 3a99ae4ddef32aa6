"""DINO teacher features for DinoVQ (SPEC §5.2: the target ``dino_features_gt`` of a frozen teacher).

Three sources, tried in this order by ``teacher.kind: auto`` (``vqfast.train.families.dinovq.task``):

1. **Precomputed shards** beside the images: ``<root>/dino_features/shard_00000.pt`` … each a dict
   ``{"names": [image path relative to root, ...], "features": float16 (N, h, w, D), "teacher": str,
   "image_size": int}`` written by ``python -m vqfast.tools.dino_features`` and read with the Rust
   reader ``vqfast.io.load_pt`` (``torch.load(weights_only=True)`` fallback). ``DinoFeatureStore``
   looks rows up by image path.
2. **A frozen teacher computed online** from a local checkpoint: DINOv2 through ``torch.hub.load`` of a
   local clone of facebookresearch/dinov2 (``kind: dinov2_hub``, ``hub_dir``, ``hub_model``,
   ``checkpoint``), or a ``timm`` model (``kind: timm``, ``timm_model``, ``checkpoint``). Never downloads.
3. **A small random frozen ViT** (``kind: random``, fixed seed) — for generated data and tests only:
   its features carry no semantics.

Every teacher takes the *model input* (images normalised with the data mean/std, usually [-1, 1]),
maps it back to [0, 1], applies the ImageNet mean/std (real teachers) and resizes so that the teacher's
patch grid equals the tokenizer's grid; it returns patch tokens (B, h, w, D) in fp32.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vqfast.errors import WeightsNotFoundError
from vqfast.loaders.clips import FRAME_EXTS, load_frame
from vqfast.loaders.clips import list_images as _list_images

log = logging.getLogger("vqfast")

TEACHER_KINDS = ("auto", "precomputed", "dinov2_hub", "timm", "random")
TeacherKind = Literal["auto", "precomputed", "dinov2_hub", "timm", "random"]
SHARD_DIR = "dino_features"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TeacherUnavailableError(WeightsNotFoundError):
    """No DINO teacher features can be obtained with the given settings; the message names the options."""


def teacher_options_help(root: str | None = None) -> str:
    where = f"{Path(root) / SHARD_DIR}" if root else f"<data.root>/{SHARD_DIR}"
    return ("DinoVQ needs DINO teacher features. Options: (1) precompute shards with "
            f"`python -m vqfast.tools.dino_features --root <data.root> --teacher dinov2_hub --hub-dir <dir> "
            f"--checkpoint <weights.pth>` (read from {where}); (2) an online frozen teacher: "
            "model.teacher.kind=dinov2_hub with model.teacher.hub_dir=<local clone of facebookresearch/dinov2> "
            "(+ model.teacher.checkpoint=<dinov2_vitb14_pretrain.pth>), or model.teacher.kind=timm with "
            "model.teacher.timm_model=<name> and model.teacher.checkpoint=<file> (needs `pip install timm`); "
            "(3) model.teacher.kind=random: a random frozen ViT for smoke tests only (no semantics).")


# ---- teachers -------------------------------------------------------------------------------------
def _freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


class RandomViTTeacher(nn.Module):
    """A small random ViT (fixed seed, frozen): (B, C, H, W) → (B, h, w, dim); smoke tests only."""

    def __init__(self, img_size: Sequence[int] | int, patch_size: int, dim: int = 64, depth: int = 2,
                 num_heads: int = 4, seed: int = 0):
        super().__init__()
        from vqfast.models.vit import ViTEncoder
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # layerscale off and learned positions: token features differ across the grid and images
            self.vit = ViTEncoder(img_size, patch_size, 3, dim, depth, num_heads, pos_embed="learned",
                                  layerscale_init=None)
        self.grid = self.vit.grid
        self.dim = dim
        self.name = f"random_vit(dim={dim},depth={depth},seed={seed})"
        _freeze(self)

    def train(self, mode: bool = True) -> RandomViTTeacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        return self.vit(x.float()).reshape(B, *self.grid, self.dim)  # (B, h, w, dim)


class FrozenBackboneTeacher(nn.Module):
    """A real teacher (DINOv2 hub / timm) behind the input conversion and token extraction."""

    def __init__(self, backbone: nn.Module, kind: str, grid: tuple[int, int], teacher_patch: int, dim: int,
                 input_mean: Sequence[float], input_std: Sequence[float], name: str):
        super().__init__()
        self.backbone = _freeze(backbone)
        self.kind, self.grid, self.teacher_patch, self.dim, self.name = kind, tuple(grid), teacher_patch, dim, name
        self.register_buffer("in_mean", torch.tensor(input_mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("in_std", torch.tensor(input_std, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("net_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("net_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def train(self, mode: bool = True) -> FrozenBackboneTeacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        h, w = self.grid
        img = (x.float() * self.in_std + self.in_mean).clamp(0, 1)  # (B, 3, H, W) in [0, 1]
        img = (img - self.net_mean) / self.net_std
        size = (h * self.teacher_patch, w * self.teacher_patch)
        if tuple(img.shape[-2:]) != size:
            img = F.interpolate(img, size=size, mode="bicubic", align_corners=False)
        if self.kind == "dinov2_hub":
            tokens = self.backbone.forward_features(img)["x_norm_patchtokens"]  # (B, h·w, D)
        else:
            tokens = self.backbone.forward_features(img)  # (B, prefix + h·w, D)
            tokens = tokens[:, getattr(self.backbone, "num_prefix_tokens", 1):]
        return tokens.float().reshape(B, h, w, -1)  # (B, h, w, D)


def _load_state(path: str) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("teacher", "model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}


def build_teacher(kind: str, *, img_size: Sequence[int], grid: tuple[int, int], hub_dir: str | None = None,
                  hub_model: str = "dinov2_vitb14", timm_model: str | None = None,
                  checkpoint: str | None = None, teacher_patch: int = 14,
                  input_mean: Sequence[float] = (0.5, 0.5, 0.5), input_std: Sequence[float] = (0.5, 0.5, 0.5),
                  random_dim: int = 64, random_depth: int = 2, random_heads: int = 4, seed: int = 0) -> nn.Module:
    """An online teacher of ``kind`` in ("dinov2_hub", "timm", "random"); raises TeacherUnavailableError."""
    if kind == "random":
        patch = img_size[0] // grid[0]
        log.warning("DinoVQ teacher: RANDOM frozen ViT (dim %d): a smoke-test target, not DINO features",
                    random_dim)
        return RandomViTTeacher(tuple(img_size), patch, random_dim, random_depth, random_heads, seed)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise TeacherUnavailableError(f"teacher checkpoint {checkpoint!r} does not exist. " + teacher_options_help())
    if kind == "dinov2_hub":
        if not hub_dir or not (Path(hub_dir) / "hubconf.py").is_file():
            raise TeacherUnavailableError(f"teacher.kind=dinov2_hub needs hub_dir = a local clone of "
                                          f"facebookresearch/dinov2 with hubconf.py (got {hub_dir!r}). "
                                          + teacher_options_help())
        backbone = torch.hub.load(hub_dir, hub_model, source="local", pretrained=False)
        if checkpoint:
            backbone.load_state_dict(_load_state(checkpoint), strict=True)
        else:
            log.warning("DinoVQ teacher %s from %s without a checkpoint: RANDOM weights", hub_model, hub_dir)
        dim = int(backbone.embed_dim)
        patch = int(getattr(backbone, "patch_size", teacher_patch))
        return FrozenBackboneTeacher(backbone, kind, grid, patch, dim, input_mean, input_std, hub_model)
    if kind == "timm":
        try:
            import timm
        except ImportError as exc:
            raise TeacherUnavailableError("teacher.kind=timm but timm is not installed. "
                                          + teacher_options_help()) from exc
        if not timm_model:
            raise TeacherUnavailableError("teacher.kind=timm needs teacher.timm_model. " + teacher_options_help())
        backbone = timm.create_model(timm_model, pretrained=False, num_classes=0, dynamic_img_size=True)
        if checkpoint:
            backbone.load_state_dict(_load_state(checkpoint), strict=True)
        else:
            log.warning("DinoVQ teacher timm:%s without a checkpoint: RANDOM weights", timm_model)
        patch = backbone.patch_embed.patch_size
        patch = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        dim = int(backbone.num_features)
        return FrozenBackboneTeacher(backbone, kind, grid, patch, dim, input_mean, input_std, timm_model)
    raise TeacherUnavailableError(f"teacher kind {kind!r} is not one of ('dinov2_hub', 'timm', 'random') "
                                  "for an online teacher. " + teacher_options_help())


# ---- precomputed shards ---------------------------------------------------------------------------
def list_images(root: str | os.PathLike) -> list[Path]:
    """The images of ``root`` the training loader reads (same files, same order)."""
    return _list_images(root, FRAME_EXTS)


def find_feature_shards(root: str | os.PathLike) -> list[Path]:
    folder = Path(root) / SHARD_DIR
    return sorted(folder.glob("shard_*.pt")) if folder.is_dir() else []


def _read_shard(path: Path) -> dict:
    try:
        from vqfast.io import load_pt
    except (ImportError, OSError):  # extension missing or broken: torch.load still works
        load_pt = None
    if load_pt is not None:
        return load_pt(path)
    return torch.load(path, map_location="cpu", weights_only=True)


class DinoFeatureStore:
    """All feature shards of an image folder, looked up by image path: ``lookup(paths) -> (B, h, w, D)``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        shards = find_feature_shards(self.root)
        if not shards:
            raise TeacherUnavailableError(f"no feature shards under {self.root / SHARD_DIR}. "
                                          + teacher_options_help(str(self.root)))
        self._features: list[torch.Tensor] = []
        self._where: dict[str, tuple[int, int]] = {}
        self.teacher = None
        for i, path in enumerate(shards):
            obj = _read_shard(path)
            if not isinstance(obj, dict) or "names" not in obj or "features" not in obj:
                raise TeacherUnavailableError(f"{path} is not a DINO feature shard (needs keys 'names', 'features')")
            feats = obj["features"]  # (N, h, w, D)
            if feats.dim() != 4 or feats.shape[0] != len(obj["names"]):
                raise TeacherUnavailableError(f"{path}: features {tuple(feats.shape)} do not match "
                                              f"{len(obj['names'])} names (expected (N, h, w, D))")
            self._features.append(feats)
            self.teacher = obj.get("teacher", self.teacher)
            for row, name in enumerate(obj["names"]):
                self._where[str(name)] = (i, row)
        self.grid = tuple(self._features[0].shape[1:3])
        self.dim = int(self._features[0].shape[-1])
        log.info("DINO features: %d images from %d shards under %s (grid %s, dim %d, teacher %s)", len(self._where),
                 len(shards), self.root / SHARD_DIR, self.grid, self.dim, self.teacher)

    def __len__(self) -> int:
        return len(self._where)

    def _key(self, path: str | os.PathLike) -> str:
        p = Path(path)
        if p.is_absolute():
            try:
                return p.resolve().relative_to(self.root).as_posix()
            except ValueError:
                pass
        return p.as_posix()

    def lookup(self, paths: Sequence[str | os.PathLike]) -> torch.Tensor:
        rows = []
        for path in paths:
            key = self._key(path)
            where = self._where.get(key)
            if where is None:
                raise TeacherUnavailableError(f"no precomputed DINO features for image {key!r} under "
                                              f"{self.root / SHARD_DIR}; re-run python -m vqfast.tools.dino_features")
            rows.append(self._features[where[0]][where[1]])
        return torch.stack(rows).float()  # (B, h, w, D)


@torch.no_grad()
def write_feature_shards(root: str | os.PathLike, teacher: nn.Module, *, size: int, batch_size: int = 32,
                         shard_size: int = 1024, mean: Sequence[float] = (0.5, 0.5, 0.5),
                         std: Sequence[float] = (0.5, 0.5, 0.5), device: str | torch.device = "cpu",
                         overwrite: bool = False) -> list[Path]:
    """Run ``teacher`` over every image of ``root`` (resized/cropped to ``size`` as the loaders do) and write
    fp16 shards under ``root/dino_features``. Returns the shard paths."""
    root = Path(root)
    images = list_images(root)  # DataNotFoundError naming the folder when it holds none
    out_dir = root / SHARD_DIR
    if find_feature_shards(root) and not overwrite:
        raise FileExistsError(f"{out_dir} already holds shards; pass overwrite=True (--overwrite) to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in find_feature_shards(root):
        old.unlink()
    teacher = teacher.to(device)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    batch_size = max(1, min(batch_size, shard_size))  # a shard never exceeds shard_size rows
    written: list[Path] = []
    names: list[str] = []
    feats: list[torch.Tensor] = []

    def flush():
        path = out_dir / f"shard_{len(written):05d}.pt"
        torch.save({"names": list(names), "features": torch.cat(feats).contiguous(),
                    "teacher": str(getattr(teacher, "name", type(teacher).__name__)), "image_size": int(size)}, path)
        written.append(path)
        names.clear()
        feats.clear()

    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        arr = np.stack([load_frame(p, (size, size)) for p in chunk])  # (b, H, W, 3) uint8
        x = torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).float().div_(255.0)  # (b, 3, H, W)
        x = (x - mean_t) / std_t
        feats.append(teacher(x).to(torch.float16).cpu())  # (b, h, w, D)
        names.extend(p.relative_to(root).as_posix() for p in chunk)
        if len(names) >= shard_size:
            flush()
    if names:
        flush()
    log.info("wrote %d DINO feature shards for %d images under %s", len(written), len(images), out_dir)
    return written


def make_dino_dataset(root: str | os.PathLike, *, num_images: int, size: int, teacher: nn.Module, seed: int = 0,
                      shard_size: int = 256) -> Path:
    """Generated DinoVQ data: textured-shape JPEGs + their teacher features in shards beside them."""
    from vqfast.data.synthetic import make_images
    root = Path(root)
    make_images(root, num_images=num_images, size=size, seed=seed)
    write_feature_shards(root, teacher, size=size, shard_size=shard_size, overwrite=True)
    return root
