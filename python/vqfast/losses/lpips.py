"""LPIPS (VGG16) through the ``lpips`` package, frozen and in eval mode (SPEC.md §1.4, §6.8).

Eval mode is kept even under a parent's ``.train()`` (the lin layers' Dropout(0.5) stays off), unless
``taming_dropout=True``: then the module follows its parent's mode as in taming, where LPIPS is a child of
the Lightning module and its dropout is live during training (SPEC §6 pitfall 8).

Backbone weights cannot be downloaded by vqfast. ``backbone="imagenet"`` looks for torchvision's
``vgg16-397923af.pth`` at ``backbone_path`` or in ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``)
and raises ``PerceptualWeightsMissing`` naming the file and the place when it is absent.
``backbone="random"`` uses a randomly initialised VGG trunk (tests, CPU quickstart: not a perceptual
metric, only a smoke path). The calibrated ``lin`` layers ship inside the ``lpips`` package.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn

log = logging.getLogger("vqfast")

VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
BACKBONES = ("imagenet", "random")


class PerceptualWeightsMissing(FileNotFoundError):
    """The LPIPS VGG16 backbone weights are not on disk (vqfast never downloads them)."""


def find_vgg16_weights(backbone_path: str | os.PathLike | None = None) -> Path:
    candidates = []
    if backbone_path:
        candidates.append(Path(backbone_path))
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE)
    for path in candidates:
        if path.is_file():
            return path
    raise PerceptualWeightsMissing(
        f"LPIPS needs the ImageNet VGG16 weights file {VGG16_FILE!r} and none was found (looked at: "
        f"{', '.join(str(p) for p in candidates)}). Download {VGG16_URL} on a machine with network access "
        f"and put it at {candidates[-1]} (or set perceptual.backbone_path to its location); "
        "for smoke tests only, set perceptual.backbone: random.")


class LPIPS(nn.Module):
    """``forward(x, y)`` on images in [-1, 1] → distance of shape (B, 1, 1, 1). Frozen; eval forever unless
    ``taming_dropout`` (then ``.train()`` turns the lin-layer dropout on, as in taming)."""

    def __init__(self, backbone: Literal["imagenet", "random"] = "imagenet",
                 backbone_path: str | os.PathLike | None = None, lin_path: str | os.PathLike | None = None,
                 taming_dropout: bool = False):
        super().__init__()
        self.taming_dropout = bool(taming_dropout)
        if backbone not in BACKBONES:
            raise ValueError(f"perceptual backbone {backbone!r} is not one of {BACKBONES}")
        weights = find_vgg16_weights(backbone_path) if backbone == "imagenet" else None
        import lpips as lpips_pkg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation inside lpips
            self.net = lpips_pkg.LPIPS(net="vgg", pretrained=True, pnet_rand=True, model_path=lin_path,
                                       verbose=False, eval_mode=True)
        if weights is not None:
            self._load_backbone(weights)
        else:
            log.warning("LPIPS uses a RANDOM VGG16 backbone (perceptual.backbone=random): "
                        "the perceptual loss is not meaningful")
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def _load_backbone(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise PerceptualWeightsMissing(f"cannot read VGG16 weights {path}: {exc}; replace the file "
                                           f"with {VGG16_URL}") from exc
        trunk = self.net.net  # lpips.pretrained_networks.vgg16: slice1..slice5 holding features[i]
        for slice_name in ("slice1", "slice2", "slice3", "slice4", "slice5"):
            for idx, layer in getattr(trunk, slice_name).named_children():
                for pname in ("weight", "bias"):
                    key = f"features.{idx}.{pname}"
                    if hasattr(layer, pname) and getattr(layer, pname) is not None:
                        if key not in state:
                            raise PerceptualWeightsMissing(f"{path} is not a torchvision VGG16 file (no {key})")
                        getattr(layer, pname).data.copy_(state[key])
        log.info("LPIPS VGG16 backbone loaded from %s", path)

    def train(self, mode: bool = True) -> "LPIPS":
        # A parent's .train() must not re-enable the lin-layer dropout (SPEC §6.8) unless taming's behaviour
        # is asked for; the frozen VGG trunk has no dropout or BatchNorm, so only the lin dropout changes.
        return super().train(bool(mode) and getattr(self, "taming_dropout", False))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x, y)  # (B, 1, 1, 1)
