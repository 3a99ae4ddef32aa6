"""LPIPS as a metric (``lpips`` package, Zhang et al.; ``net="vgg"`` or ``"alex"``, version 0.1 linear heads shipped
in the package) with the ImageNet backbone read from a file, never downloaded (as ``vqfast.losses.lpips``):
``backbone`` = a path, None (``$TORCH_HOME/hub/checkpoints/<torchvision file>``) or ``"random"`` (smoke tests only).
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from vqfast.eval.metrics import EvalError

log = logging.getLogger("vqfast")
BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
BACKBONE_URLS = {"vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
                 "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"}


class LPIPSWeightsError(EvalError, FileNotFoundError):
    """The LPIPS backbone file is missing or does not fit."""


def find_backbone(net: str, backbone: str | os.PathLike | None) -> Path:
    hub = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]
    path = Path(backbone) if backbone is not None else hub
    if path.is_file():
        return path
    raise LPIPSWeightsError(
        f"LPIPS-{net} needs the torchvision ImageNet backbone {BACKBONE_FILES[net]!r}; {str(path)!r} does not exist. "
        f"vqfast never downloads: fetch {BACKBONE_URLS[net]} on a machine with network access and put it at {hub} "
        "or pass its path (--lpips-backbone PATH, eval.lpips_backbone); or leave lpips out of the metrics.")


class LPIPSMetric(nn.Module):
    """``forward(x, y)`` on images in [-1, 1] (B, 3, H, W) → per-image distance (B,) float32. Frozen, eval mode."""

    def __init__(self, net: str = "vgg", backbone: str | os.PathLike | None = None):
        super().__init__()
        if net not in BACKBONE_FILES:
            raise EvalError(f"LPIPS net {net!r} is not one of {sorted(BACKBONE_FILES)}")
        random = backbone is not None and str(backbone) == "random"
        path = None if random else find_backbone(net, backbone)
        import lpips as lpips_pkg

        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation inside lpips
            torch.manual_seed(0)  # a "random" backbone is the same in every process (ranks agree)
            self.net = lpips_pkg.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False, eval_mode=True)
        if path is not None:
            self._load_backbone(path, net)
        else:
            log.warning("LPIPS-%s uses a RANDOM backbone: the values are not LPIPS (smoke tests only)", net)
        self.requires_grad_(False)
        super().train(False)

    def _load_backbone(self, path: Path, net: str) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise LPIPSWeightsError(f"cannot read the LPIPS backbone {str(path)!r}: {exc}") from exc
        trunk = self.net.net  # lpips.pretrained_networks.{vgg16,alexnet}: slice1..5 holding features[i]
        for name, slice_ in trunk.named_children():
            if not name.startswith("slice"):
                continue
            for idx, layer in slice_.named_children():
                for pname in ("weight", "bias"):
                    key = f"features.{idx}.{pname}"
                    param = getattr(layer, pname, None)
                    if param is None:
                        continue
                    if key not in state or state[key].shape != param.shape:
                        raise LPIPSWeightsError(f"{str(path)!r} is not the torchvision {net} ImageNet file: "
                                                f"{key} missing or of another shape")
                    with torch.no_grad():
                        param.copy_(state[key])

    def train(self, mode: bool = True):
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x.float(), y.float()).reshape(-1)  # (B,)
