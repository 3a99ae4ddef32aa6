"""The FID Inception-v3 (TF 2015-12-05 graph ported to PyTorch) and its 2048-d pool features.

Architecture: torchvision's Inception3 trunk with the FID patches of pytorch-fid ``inception.py``
(``FIDInceptionA``/``FIDInceptionC``/``FIDInceptionE_1``: average pools that exclude the zero padding,
``FIDInceptionE_2``: a max pool) = torch-fidelity ``feature_extractor_inceptionv3.py``. Parameter names are theirs,
so the published file ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid; the same bytes as torch-fidelity's
``weights-inception-2015-12-05-6726825d.pth``) loads strictly.

Weights are never downloaded: ``find_inception_weights`` looks at the given path, then ``$TORCH_HOME/hub/checkpoints``
(``torch.hub.get_dir()``) for both file names, and checks the file's sha256 against ``INCEPTION_SHA256``
(``sha256=None`` opts out, for test weights only).

Input pipeline (``mode``), uint8 (B, 3, H, W) images:

* ``"torch-fidelity"`` (default; torchmetrics wraps the same extractor): float32, TF1-compatible bilinear resize
  to 299² (``interpolate_bilinear_2d_like_tensorflow1x(align_corners=False)``, its exact "slow" method), then
  (x − 128) / 128.
* ``"pytorch-fid"``: x / 255 (its ``ToTensor``), ``F.interpolate(bilinear, align_corners=False)`` to 299², 2x − 1.

TF32 is switched off for the forward (``torch.backends.{cuda.matmul,cudnn}.allow_tf32``), restored after.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqfast.errors import VQFastError

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_FILE_FIDELITY = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
"""sha256 of the published file (95,628,359 bytes; identical for the pytorch-fid and torch-fidelity releases)."""
MODES = ("torch-fidelity", "pytorch-fid")
SIZE = 299


class InceptionWeightsError(VQFastError, FileNotFoundError):
    """The FID Inception weights are missing, unreadable or not the published file (sha256 mismatch)."""


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """``path`` when given (it must exist), else the torch hub cache; InceptionWeightsError naming the file
    and where to put it."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if path is not None:
        if Path(path).is_file():
            return Path(path)
        raise InceptionWeightsError(f"Inception weights {str(path)!r} do not exist. FID needs {INCEPTION_FILE} "
                                    f"(download {INCEPTION_URL} on a machine with network access)")
    for name in (INCEPTION_FILE, INCEPTION_FILE_FIDELITY):
        if (hub / name).is_file():
            return hub / name
    raise InceptionWeightsError(
        f"rFID needs the FID Inception-v3 weights {INCEPTION_FILE!r} and none was found (looked in {hub} for "
        f"{INCEPTION_FILE} and {INCEPTION_FILE_FIDELITY}). vqfast never downloads: fetch {INCEPTION_URL} on a "
        f"machine with network access and put it at {hub / INCEPTION_FILE}, or pass its path (--inception PATH, "
        "eval.inception_path); or leave rfid out of the metrics.")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def no_tf32():
    """TF32 off for matmuls and cuDNN convolutions inside the block (the reference features are fp32)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def resize_bilinear_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear(align_corners=False)`` of float (B, C, H, W) to (size, size): source
    coordinate = out · (in / out), no half-pixel offset, upper neighbour clamped (torch-fidelity
    ``interpolate_compat_tensorflow.py``, method "slow", float32 grid as there)."""
    def taps(n_in: int):
        g = torch.arange(size, dtype=x.dtype, device=x.device) * torch.tensor(n_in / size, dtype=torch.float32)
        lo = g.long()
        return lo, (lo + 1).clamp_max(n_in - 1), g - lo.float()

    ylo, yhi, dy = taps(x.shape[2])
    xlo, xhi, dx = taps(x.shape[3])
    top, bottom = x[:, :, ylo, :], x[:, :, yhi, :]  # (B, C, size, W)
    in00, in01, in10, in11 = top[..., xlo], top[..., xhi], bottom[..., xlo], bottom[..., xhi]
    row0 = in00 + (in01 - in00) * dx.view(1, 1, 1, size)
    row1 = in10 + (in11 - in10) * dx.view(1, 1, 1, size)
    return row0 + (row1 - row0) * dy.view(1, 1, size, 1)


# ---- the network (torchvision / pytorch-fid / torch-fidelity block structure) -----------------------------
class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """TF's average pool ignores the padded zeros (pytorch-fid's FID patch)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """``max_pool=False``: FIDInceptionE_1 (Mixed_7b); True: FIDInceptionE_2 (Mixed_7c, a max pool in the TF graph)."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    """The FID network up to the 2048-d global average pool (``fc`` kept so the published file loads strictly)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, 299, 299) in [-1, 1] → (B, 2048)."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (B, 64, 147, 147)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (B, 192, 71, 71)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 192, 35, 35)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)  # → (B, 2048, 8, 8)
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)  # (B, 2048)


class InceptionFeatures(nn.Module):
    """``InceptionFeatures(weights_path)(uint8 (B, 3, H, W))`` → float32 (B, 2048) FID pool features.

    ``weights_path``: the weights file (None: the torch hub cache); ``sha256``: the digest the file must have
    (default the published one; None skips the check, for test weights only); ``mode``: the reference whose
    resize and scaling are reproduced (module docstring); ``input_size``: the network resolution, 299 for FID
    (smaller only for cheap parity tests against the references patched the same way)."""

    def __init__(self, weights_path: str | os.PathLike | None = None, *,
                 mode: Literal["torch-fidelity", "pytorch-fid"] = "torch-fidelity",
                 sha256: Optional[str] = INCEPTION_SHA256, device: torch.device | str = "cpu",
                 input_size: int = SIZE):
        super().__init__()
        self.input_size = int(input_size)
        if mode not in MODES:
            raise VQFastError(f"InceptionFeatures: mode={mode!r} is not one of {MODES}")
        self.mode = mode
        path = find_inception_weights(weights_path)
        if sha256 is not None:
            digest = sha256_of(path)
            if digest != sha256:
                raise InceptionWeightsError(
                    f"Inception weights {str(path)!r} have sha256 {digest}, not the published {sha256} of "
                    f"{INCEPTION_FILE}: the file is corrupt or a different network; replace it with "
                    f"{INCEPTION_URL}")
        self.net = FIDInceptionV3()
        self._load(path)
        self.net.requires_grad_(False).eval()
        self.to(device)

    def _load(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InceptionWeightsError(f"cannot read Inception weights {str(path)!r}: {type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0][:200]}") from exc
        if not isinstance(state, dict):
            raise InceptionWeightsError(f"Inception weights {str(path)!r} are not a state dict")
        for key, value in self.net.state_dict().items():  # files saved before BatchNorm's counter
            if key.endswith("num_batches_tracked") and key not in state:
                state[key] = torch.zeros_like(value)
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InceptionWeightsError(f"Inception weights {str(path)!r} do not fit the FID Inception-v3: "
                                        f"{str(exc).splitlines()[0][:300]}") from exc

    def train(self, mode: bool = True):
        return super().train(False)  # frozen BatchNorm statistics, always

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) → float32 (B, 3, 299, 299) in the network's input range."""
        x = images.to(torch.float32)
        if self.mode == "torch-fidelity":
            return (resize_bilinear_tf1(x, self.input_size) - 128) / 128
        x = F.interpolate(x / 255, size=(self.input_size,) * 2, mode="bilinear", align_corners=False)
        return 2 * x - 1

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise VQFastError(f"InceptionFeatures expects uint8 images of shape (B, 3, H, W); got {images.dtype} "
                              f"{tuple(images.shape)}")
        device = next(self.net.parameters()).device
        with no_tf32():
            return self.net(self.preprocess(images.to(device))).float()


def random_inception_state_dict(seed: int = 0, calibration_images: int = 2, calibration_size: int = 160
                                ) -> dict[str, torch.Tensor]:
    """A randomly initialised FID Inception state dict with BatchNorm statistics calibrated on random images
    (each BN's running mean/var = its batch statistics), so features are neither saturated nor vanishing.
    For tests and smoke runs only: FID from it is not comparable to anything."""
    gen = torch.Generator().manual_seed(seed)
    net = FIDInceptionV3()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.momentum = 1.0  # running stats := the calibration batch's
        net.train()
        x = torch.rand((calibration_images, 3, calibration_size, calibration_size), generator=gen) * 2 - 1
        net(x)
    state = net.state_dict()
    for k in [k for k in state if k.endswith("num_batches_tracked")]:
        state[k] = torch.zeros_like(state[k])
    return state
