"""Reconstruction metrics with the reference implementations' exact definitions.

* ``psnr(x, y)``: PSNR in dB of uint8-quantised images (skimage ``peak_signal_noise_ratio(a, b, data_range=255)``
  on ``round(clip(x, 0, 1) · 255)``; the field judges reconstructions as the PNGs they would be saved as).
* ``ssim(x, y)``: skimage ``structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)`` per image: 11-tap Gaussian (truncate 3.5), K1 = 0.01, K2 = 0.03,
  population covariances, the mean of the SSIM map after cropping the filter radius, averaged over channels.
  The crop removes exactly the pixels whose window touches the border, so a valid (unpadded) convolution gives
  skimage's numbers without reproducing its reflect padding. float64 throughout.
* ``codebook_usage(indices, K)`` and ``CodeCounter``: distinct codes / K, entropy (nats) and perplexity
  (= exp(entropy)) of the code histogram over the whole set; counts accumulate on device with ``scatter_add_``
  (no host sync per batch; CUDA ``bincount`` syncs).
* ``GaussianStats``: streaming float64 mean and unbiased covariance (``np.cov(rowvar=False)``) of features as
  running sums Σx and Σxxᵀ on device; never holds the features; ranks are reduced with one all-reduce.
* ``frechet_distance(mu1, sigma1, mu2, sigma2)``: ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr √(Σ1 Σ2) with
  tr √(Σ1 Σ2) as torch-fidelity computes it (``metric_fid.fid_statistics_to_metric``: Σ √eigvals(Σ1 Σ2), real
  part; ``method="eig"``, default) or as pytorch-fid does (``fid_score.calculate_frechet_distance``:
  ``scipy.linalg.sqrtm``, eps·I added when the product is singular, imaginary parts checked; ``method="sqrtm"``).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from vqfast.errors import VQFastError


class EvalError(VQFastError, ValueError):
    """A bad evaluation argument or option (the message names it and what is allowed)."""


class MetricInputError(EvalError):
    """Images or statistics with the wrong shape, dtype or range (the message names the argument)."""


def _check_images(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    for name, t in (("x", x), ("y", y)):
        if not torch.is_tensor(t) or not t.is_floating_point() or t.dim() != 4:
            raise MetricInputError(f"{what}: {name} must be a float tensor of shape (B, C, H, W) in [0, 1]; got "
                                   f"{type(t).__name__} {getattr(t, 'dtype', '')} {tuple(getattr(t, 'shape', ()))}")
    if x.shape != y.shape:
        raise MetricInputError(f"{what}: x has shape {tuple(x.shape)} but y has {tuple(y.shape)}")


def quantize_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] → uint8 as a PNG writer stores them: round(clip(x, 0, 1) · 255)."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8)


def psnr(x: torch.Tensor, y: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
    """Per-image PSNR in dB, float64 (B,), of float images in [0, 1] (B, C, H, W). ``quantize`` (default):
    both are rounded to uint8 first, as skimage ``peak_signal_noise_ratio(uint8_x, uint8_y, data_range=255)``.
    Identical images give +inf (as skimage)."""
    _check_images(x, y, "psnr")
    if quantize:
        a, b = quantize_uint8(x).double() / 255, quantize_uint8(y).double() / 255
    else:
        a, b = x.detach().double(), y.detach().double()
    mse = ((a - b) ** 2).flatten(1).mean(1)  # (B,)
    return 10 * torch.log10(1.0 / mse)


def _gaussian_taps(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    """scipy.ndimage ``_gaussian_kernel1d(sigma, 0, radius)`` with radius = int(truncate·sigma + 0.5)."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 / sigma ** 2 * t ** 2)
    return w / w.sum()  # (11,)


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM, float64 (B,), of float images in [0, 1] (B, C, H, W) with H, W ≥ 11; equals skimage
    ``structural_similarity(..., channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1)`` (the module docstring has the derivation)."""
    _check_images(x, y, "ssim")
    B, C, H, W = x.shape
    taps = _gaussian_taps().to(x.device)
    r = (taps.numel() - 1) // 2
    if H < 2 * r + 1 or W < 2 * r + 1:
        raise MetricInputError(f"ssim: images of {H}x{W} are smaller than the {2 * r + 1}-pixel Gaussian window")
    a, b = x.detach().double(), y.detach().double()
    kh = taps.view(1, 1, -1, 1).expand(5 * C, 1, -1, 1)
    kw = taps.view(1, 1, 1, -1).expand(5 * C, 1, 1, -1)
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)  # (B, 5C, H, W)
    f = F.conv2d(F.conv2d(stack, kh, groups=5 * C), kw, groups=5 * C)  # (B, 5C, H-2r, W-2r), valid = skimage crop
    ux, uy, uxx, uyy, uxy = f.split(C, dim=1)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(dim=1)  # (B,)


# ---- codebook usage ---------------------------------------------------------------------------------------
class CodeCounter:
    """Code histogram over a whole data set, on device: ``update(indices)`` never syncs the host; ``compute()``
    (once, at the end) returns ``usage`` (distinct codes / K), ``perplexity`` and ``entropy`` (nats)."""

    def __init__(self, num_codes: int, device: torch.device | str = "cpu"):
        if int(num_codes) < 1:
            raise MetricInputError(f"codebook size K={num_codes} must be ≥ 1")
        self.num_codes = int(num_codes)
        self.counts = torch.zeros(self.num_codes, dtype=torch.int64, device=device)

    def update(self, indices: torch.Tensor) -> None:
        if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise MetricInputError(f"code indices must be an integer tensor, got {indices.dtype}")
        codes = indices.reshape(-1).to(self.counts.device, torch.int64)
        self.counts.scatter_add_(0, codes, torch.ones_like(codes))  # out-of-range codes raise (CPU) / assert (CUDA)

    def all_reduce(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.counts)

    def tensors(self) -> dict[str, torch.Tensor]:
        """0-dim float64 tensors on the counts' device (no host sync)."""
        n = self.counts.sum().clamp_min(1).double()
        p = self.counts.double() / n
        entropy = -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum()
        return {"usage": (self.counts > 0).double().mean(), "perplexity": torch.exp(entropy), "entropy": entropy}

    def compute(self) -> dict[str, float]:
        t = self.tensors()
        values = torch.stack(list(t.values())).tolist()  # one host sync
        return dict(zip(t, values, strict=True))


def codebook_usage(indices: torch.Tensor, K: int) -> dict[str, float]:
    """``usage`` = distinct codes in ``indices`` / K, ``entropy`` (nats) of their histogram and ``perplexity``
    = exp(entropy); computed on the indices' device, one host sync for the result."""
    counter = CodeCounter(K, indices.device)
    counter.update(indices)
    return counter.compute()


# ---- Fréchet distance -------------------------------------------------------------------------------------
class GaussianStats:
    """Streaming float64 mean and covariance of (N, D) features: Σx, Σxxᵀ and N on the features' device.
    ``mean_cov()`` → (μ (D,), Σ (D, D)) as numpy float64, Σ unbiased like ``np.cov(features, rowvar=False)``."""

    def __init__(self, dim: int = 2048, device: torch.device | str = "cpu"):
        self.dim = int(dim)
        self.n = torch.zeros((), dtype=torch.float64, device=device)
        self.sum = torch.zeros(self.dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=device)

    def update(self, features: torch.Tensor) -> None:
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise MetricInputError(f"features must have shape (N, {self.dim}); got {tuple(features.shape)}")
        f = features.detach().to(self.sum.device, torch.float64)  # (N, D)
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.outer.addmm_(f.T, f)  # Σ xxᵀ, (D, D)

    def all_reduce(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            flat = torch.cat([self.n.view(1), self.sum, self.outer.view(-1)])
            dist.all_reduce(flat)
            self.n.copy_(flat[0])
            self.sum.copy_(flat[1:1 + self.dim])
            self.outer.copy_(flat[1 + self.dim:].view(self.dim, self.dim))

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        n = float(self.n)
        if n < 2:
            raise MetricInputError(f"a covariance needs at least 2 samples; got {int(n)}")
        mu = self.sum / n
        sigma = (self.outer - n * torch.outer(mu, mu)) / (n - 1)
        return mu.cpu().numpy(), sigma.cpu().numpy()


def _as_numpy64(a, name: str) -> np.ndarray:
    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    out = np.asarray(a, dtype=np.float64)
    if not np.isfinite(out).all():
        raise MetricInputError(f"frechet_distance: {name} has non-finite entries")
    return out


def frechet_distance(mu1, sigma1, mu2, sigma2, *, method: Literal["eig", "sqrtm"] = "eig",
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2) (numpy or torch inputs, computed in float64).
    ``method="eig"``: torch-fidelity's trace Σ √λ(Σ1 Σ2); ``"sqrtm"``: pytorch-fid's scipy ``sqrtm``."""
    mu1, mu2 = np.atleast_1d(_as_numpy64(mu1, "mu1")), np.atleast_1d(_as_numpy64(mu2, "mu2"))
    s1, s2 = np.atleast_2d(_as_numpy64(sigma1, "sigma1")), np.atleast_2d(_as_numpy64(sigma2, "sigma2"))
    if mu1.shape != mu2.shape or mu1.ndim != 1 or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise MetricInputError(f"frechet_distance: shapes mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, "
                               f"sigma2 {s2.shape} do not describe two Gaussians of one dimension")
    diff = mu1 - mu2
    if method == "eig":
        tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(s1.dot(s2)).astype("complex128")).real)
    elif method == "sqrtm":
        tr_covmean = _trace_sqrtm(s1, s2, eps)
    else:
        raise MetricInputError(f"frechet_distance: method={method!r} is not one of 'eig', 'sqrtm'")
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def _trace_sqrtm(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:
    """pytorch-fid ``calculate_frechet_distance``'s tr √(Σ1 Σ2)."""
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():  # pytorch-fid passes disp=False: no LinAlgWarning for a singular product
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1.dot(s2))
        if not np.isfinite(covmean).all():  # product almost singular: pytorch-fid adds eps to the diagonals
            offset = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise MetricInputError(f"frechet_distance: sqrtm has an imaginary component "
                                   f"{np.max(np.abs(covmean.imag)):.3g} (covariances not PSD?)")
        covmean = covmean.real
    return float(np.trace(covmean))
