"""Reconstruction evaluation: rFID, PSNR, SSIM, LPIPS and codebook usage with the reference definitions
(``python -m vqfast.eval``; README "Evaluating a tokenizer").

Contract: ``psnr(x, y)``, ``ssim(x, y)`` (float (B, C, H, W) in [0, 1] → float64 (B,)),
``frechet_distance(mu1, sigma1, mu2, sigma2)`` → float, ``InceptionFeatures(weights_path)`` (uint8 (B, 3, H, W)
→ (B, 2048)), ``codebook_usage(indices, K)`` → ``{"usage", "perplexity", "entropy"}``.
"""
from vqfast.eval.inception import (
    INCEPTION_FILE,
    INCEPTION_SHA256,
    InceptionFeatures,
    InceptionWeightsError,
    find_inception_weights,
    random_inception_state_dict,
)
from vqfast.eval.metrics import (
    CodeCounter,
    GaussianStats,
    MetricInputError,
    codebook_usage,
    frechet_distance,
    psnr,
    quantize_uint8,
    ssim,
)

__all__ = ["INCEPTION_FILE", "INCEPTION_SHA256", "CodeCounter", "GaussianStats", "InceptionFeatures",
           "InceptionWeightsError", "MetricInputError", "codebook_usage", "find_inception_weights",
           "frechet_distance", "psnr", "quantize_uint8", "random_inception_state_dict", "ssim"]
