"""PSNR and SSIM against scikit-image, usage against a plain count, the Fréchet distance against
torch-fidelity's and pytorch-fid's formulas, streaming statistics against np.mean / np.cov."""
import warnings

import numpy as np
import pytest
import torch

from vqfast.eval import (
    CodeCounter,
    GaussianStats,
    MetricInputError,
    codebook_usage,
    frechet_distance,
    psnr,
    quantize_uint8,
    ssim,
)

skimage_metrics = pytest.importorskip("skimage.metrics")


def _pair(b, c, h, w, seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g, dtype=torch.float64)
    y = (x + noise * torch.randn(b, c, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("shape", [(3, 3, 32, 32), (2, 3, 11, 17), (1, 1, 23, 40), (2, 3, 64, 48)])
def test_ssim_equals_skimage(shape):
    x, y = _pair(*shape, seed=shape[2])
    out = ssim(x, y)
    assert out.dtype == torch.float64 and out.shape == (shape[0],)
    for i in range(shape[0]):
        ref = skimage_metrics.structural_similarity(
            x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(), channel_axis=-1, gaussian_weights=True,
            sigma=1.5, use_sample_covariance=False, data_range=1)
        assert abs(out[i].item() - ref) < 1e-6, (i, out[i].item(), ref)


def test_ssim_float32_input_and_identity():
    x, _ = _pair(2, 3, 16, 16)
    assert torch.allclose(ssim(x.float(), x.float()), torch.ones(2, dtype=torch.float64))


def test_ssim_too_small_and_bad_inputs():
    with pytest.raises(MetricInputError, match="11-pixel"):
        ssim(torch.rand(1, 3, 10, 32), torch.rand(1, 3, 10, 32))
    with pytest.raises(MetricInputError, match="shape"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
    with pytest.raises(MetricInputError, match="float tensor"):
        psnr(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize("shape", [(4, 3, 16, 16), (1, 3, 7, 1823 // 7), (2, 1, 5, 9)])
def test_psnr_on_uint8_equals_skimage(shape):
    x, y = _pair(*shape, seed=1)
    out = psnr(x.float(), y.float())
    assert out.dtype == torch.float64 and out.shape == (shape[0],)
    qx, qy = quantize_uint8(x.float()), quantize_uint8(y.float())
    for i in range(shape[0]):
        ref = skimage_metrics.peak_signal_noise_ratio(qx[i].numpy(), qy[i].numpy(), data_range=255)
        assert out[i].item() == pytest.approx(ref, rel=1e-12)
    raw = psnr(x, y, quantize=False)  # unquantised: plain float64 PSNR
    mse = ((x - y) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(raw, 10 * torch.log10(1 / mse))


def test_quantize_rounds_like_png_writers():
    x = torch.tensor([0.0, 0.5 / 255, 1.49 / 255, 1.51 / 255, 1.0, 1.2, -0.1]).view(1, 1, 1, -1)
    assert quantize_uint8(x).flatten().tolist() == [0, 0, 1, 2, 255, 255, 0]


@pytest.mark.parametrize("k,n", [(1, 7), (7, 1000), (1823, 1823), (1024, 5)])
def test_codebook_usage_equals_plain_count(k, n):
    g = torch.Generator().manual_seed(k)
    idx = torch.randint(0, max(1, k // 3 + 1), (n,), generator=g).clamp_max(k - 1)
    out = codebook_usage(idx.view(-1, 1), k)
    values, counts = np.unique(idx.numpy(), return_counts=True)
    p = counts / counts.sum()
    entropy = float(-(p * np.log(p)).sum())
    assert out["usage"] == pytest.approx(len(values) / k)
    assert out["entropy"] == pytest.approx(entropy, abs=1e-12)
    assert out["perplexity"] == pytest.approx(np.exp(entropy))


def test_code_counter_streams_like_one_call():
    g = torch.Generator().manual_seed(0)
    parts = [torch.randint(0, 50, (s,), generator=g) for s in (1, 7, 1000)]
    counter = CodeCounter(64)
    for part in parts:
        counter.update(part.view(1, -1))
    assert counter.compute() == pytest.approx(codebook_usage(torch.cat(parts), 64))
    with pytest.raises(MetricInputError, match="integer"):
        counter.update(torch.zeros(3))


@pytest.mark.parametrize("n,d", [(300, 64), (1000, 7), (50, 1)])
def test_streaming_stats_equal_numpy(n, d):
    g = torch.Generator().manual_seed(d)
    feats = (torch.randn(n, d, generator=g) * 3 + 100).float()  # mean 100, the hard case for Σxxᵀ − nμμᵀ
    stats = GaussianStats(d)
    for chunk in feats.split(37):
        stats.update(chunk)
    mu, sigma = stats.mean_cov()
    f64 = feats.double().numpy()
    np.testing.assert_allclose(mu, f64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.atleast_2d(np.cov(f64, rowvar=False)), rtol=1e-9, atol=1e-9)


def _gaussians(n, d, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3
    b = a[: n // 2] + rng.normal(size=(n // 2, d)) * 0.5 + 0.2
    return (a.mean(0), np.cov(a, rowvar=False)), (b.mean(0), np.cov(b, rowvar=False))


@pytest.mark.parametrize("n,d", [(300, 32), (64, 128)])  # full rank, and rank-deficient like small-set rFID
def test_frechet_distance_equals_references(n, d):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    metric_fid = pytest.importorskip("torch_fidelity.metric_fid")
    (m1, s1), (m2, s2) = _gaussians(n, d, seed=d)
    ref_fidelity = metric_fid.fid_statistics_to_metric({"mu": m1, "sigma": s1}, {"mu": m2, "sigma": s2},
                                                       verbose=False)["frechet_inception_distance"]
    with warnings.catch_warnings():  # scipy's sqrtm(disp=) deprecation inside pytorch-fid
        warnings.simplefilter("ignore")
        ref_pytorch_fid = float(fid_score.calculate_frechet_distance(m1, s1, m2, s2))
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref_fidelity, rel=1e-9)
    assert frechet_distance(m1, s1, m2, s2, method="sqrtm") == pytest.approx(ref_pytorch_fid, rel=1e-9)
    assert frechet_distance(torch.from_numpy(m1), torch.from_numpy(s1), m2, s2) == pytest.approx(ref_fidelity)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0, abs=1e-6 * np.trace(s1))


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(MetricInputError, match="shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(MetricInputError, match="method"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3), method="svd")
    with pytest.raises(MetricInputError, match="non-finite"):
        frechet_distance(np.array([np.nan]), np.eye(1), np.zeros(1), np.eye(1))
