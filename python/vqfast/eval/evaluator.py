"""One evaluator for the CLI and for training: streams (original, reconstruction, codes) batches and reports
rFID, PSNR, SSIM, LPIPS and codebook usage over the whole set.

Everything accumulates on the device (PSNR/SSIM/LPIPS sums in float64, Inception mean/covariance sums
in float64, the code histogram): no host sync per batch. ``compute()`` all-reduces over ranks when
``torch.distributed`` is initialised (each rank evaluated its shard) and syncs once.

Images enter as uint8 (B, 3, H, W): originals as read, reconstructions quantised like the PNGs they would be
saved as (``quantize_uint8``); every metric is computed on these uint8 images.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterable, Optional, Sequence

import torch

from vqfast.eval.inception import INCEPTION_SHA256, InceptionFeatures
from vqfast.eval.metrics import CodeCounter, EvalError, GaussianStats, frechet_distance, psnr, quantize_uint8, ssim

METRICS = ("rfid", "psnr", "ssim", "lpips", "usage")


def parse_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad or not names or len(set(names)) != len(names):
        raise EvalError(f"metrics {','.join(names)!r}: each must be one of {', '.join(METRICS)}, once")
    return tuple(names)


class ReconstructionEvaluator:
    """``update(originals, reconstructions, codes=None)`` per batch, ``compute()`` once → ``{metric: float}``
    (``rfid``, ``psnr``, ``ssim``, ``lpips``, ``usage`` plus ``perplexity``/``entropy`` with usage, ``images``).

    ``num_codes``: K (needed for usage); ``inception``: a weights path or an ``InceptionFeatures``;
    ``inception_sha256``: None skips the hash check (test weights); ``lpips_net``/``lpips_backbone``: see
    ``vqfast.eval.lpips_metric``; ``fid_method``: ``frechet_distance``'s method; ``reduce``: all-reduce over
    ranks in ``compute()`` when torch.distributed is initialised (False: this rank's images only)."""

    def __init__(self, metrics: str | Sequence[str] = METRICS, *, device: torch.device | str = "cpu",
                 num_codes: Optional[int] = None, inception: str | os.PathLike | InceptionFeatures | None = None,
                 inception_sha256: Optional[str] = INCEPTION_SHA256, inception_mode: str = "torch-fidelity",
                 lpips_net: str = "vgg", lpips_backbone: str | os.PathLike | None = None, fid_method: str = "eig",
                 reduce: bool = True):
        self.metrics, self.device = parse_metrics(metrics), torch.device(device)
        if fid_method not in ("eig", "sqrtm"):
            raise EvalError(f"fid_method={fid_method!r} is not one of 'eig', 'sqrtm'")
        self.fid_method, self.reduce, self.num_codes = fid_method, reduce, num_codes
        self.inception = self.lpips = None
        if "rfid" in self.metrics:
            self.inception = (inception if isinstance(inception, InceptionFeatures) else
                              InceptionFeatures(inception, sha256=inception_sha256, mode=inception_mode))
            self.inception.to(self.device)
        if "lpips" in self.metrics:
            from vqfast.eval.lpips_metric import LPIPSMetric

            self.lpips = LPIPSMetric(lpips_net, lpips_backbone).to(self.device)
        if "usage" in self.metrics and num_codes is None:
            raise EvalError("the usage metric needs the codebook size (num_codes)")
        self.reset()

    def reset(self) -> None:
        """Zero every accumulator (the networks are kept): evaluate another set."""
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        self.sums = {k: zero.clone() for k in ("images", "psnr", "ssim", "lpips")}
        self.real_stats = self.recon_stats = self.codes = None
        if self.inception is not None:
            self.real_stats, self.recon_stats = GaussianStats(2048, self.device), GaussianStats(2048, self.device)
        if "usage" in self.metrics:
            self.codes = CodeCounter(self.num_codes, self.device)

    @torch.no_grad()
    def update(self, originals: torch.Tensor, reconstructions: torch.Tensor,
               codes: Optional[torch.Tensor] = None) -> None:
        """originals, reconstructions: uint8 (B, 3, H, W); codes: the model's code indices for the batch."""
        for name, t in (("originals", originals), ("reconstructions", reconstructions)):
            if t.dtype != torch.uint8 or t.dim() != 4 or t.shape[1] != 3:
                raise EvalError(f"{name} must be uint8 (B, 3, H, W); got {t.dtype} {tuple(t.shape)}")
        real, fake = originals.to(self.device), reconstructions.to(self.device)
        self.sums["images"] += real.shape[0]
        x, y = real.double() / 255, fake.double() / 255  # exact uint8 values in [0, 1]
        if "psnr" in self.metrics:
            self.sums["psnr"] += psnr(x, y, quantize=False).sum()
        if "ssim" in self.metrics:
            self.sums["ssim"] += ssim(x, y).sum()
        if self.lpips is not None:
            self.sums["lpips"] += self.lpips(x.float() * 2 - 1, y.float() * 2 - 1).double().sum()
        if self.inception is not None:
            self.real_stats.update(self.inception(real))
            self.recon_stats.update(self.inception(fake))
        if self.codes is not None:
            if codes is None:
                raise EvalError("the usage metric needs the code indices of every batch")
            self.codes.update(codes)

    def compute(self) -> dict[str, float]:
        import torch.distributed as dist

        distributed = self.reduce and dist.is_available() and dist.is_initialized()
        sums = torch.stack(list(self.sums.values()))
        if distributed:
            dist.all_reduce(sums)
            for stats in (self.real_stats, self.recon_stats, self.codes):
                if stats is not None:
                    stats.all_reduce()
        totals = dict(zip(self.sums, sums.tolist(), strict=True))  # the one host sync
        n = totals["images"]
        if n == 0:
            raise EvalError("no images were evaluated")
        out: dict[str, float] = {"images": int(n)}
        for k in ("psnr", "ssim", "lpips"):
            if k in self.metrics:
                out[k] = totals[k] / n
        if self.inception is not None:
            out["rfid"] = frechet_distance(*self.real_stats.mean_cov(), *self.recon_stats.mean_cov(),
                                           method=self.fid_method)
        if self.codes is not None:
            out.update(self.codes.compute())
        return {k: out[k] for k in ("images", *METRICS, "perplexity", "entropy") if k in out}


def reconstruct_and_codes(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction, code indices) of a vqfast tokenizer in one forward: the VQ model contract
    ``vq_forward(x) -> (vq_loss, recon, perplexity, indices)`` (VQGAN, EMA-VQ, VQ-VAE, VQ-VAE-2 bottom level,
    QuantArt stage 1) or DinoVQ's ``forward(x) -> {"reconstructed_imgs", "indices", ...}``."""
    if hasattr(model, "vq_forward"):
        _, recon, _, indices = model.vq_forward(x)
        return recon, indices
    out = model(x)
    if isinstance(out, dict) and "reconstructed_imgs" in out and "indices" in out:
        return out["reconstructed_imgs"], out["indices"]
    raise EvalError(f"{type(model).__name__} is not a reconstructing tokenizer (no vq_forward, no DinoVQ outputs)")


def to_uint8(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised model output (B, C, H, W) → uint8 (B, C, H, W) (``x · std + mean`` in [0, 1], rounded)."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return quantize_uint8(x.float() * s + m)


def to_model_input(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, C, H, W) → float32 ``(x/255 − mean)/std`` (the training loaders' normalisation)."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255 - m) / s


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, batches: Iterable[torch.Tensor], evaluator: ReconstructionEvaluator,
                   *, mean: Sequence[float], std: Sequence[float], device: torch.device | str,
                   autocast: Optional[Callable] = None, on_batch: Optional[Callable[[int], None]] = None
                   ) -> dict[str, float]:
    """Reconstruct every uint8 (B, 3, H, W) batch with ``model`` (eval mode, restored after) and evaluate."""
    was = model.training
    model.eval()
    try:
        for batch in batches:
            real = batch.to(device, non_blocking=True)
            with autocast() if autocast is not None else contextlib.nullcontext():
                recon, codes = reconstruct_and_codes(model, to_model_input(real, mean, std))
            evaluator.update(real, to_uint8(recon, mean, std), codes)
            if on_batch is not None:
                on_batch(real.shape[0])
    finally:
        model.train(was)
    return evaluator.compute()

