"""InceptionFeatures against the reference extractors: rFID equal to torch-fidelity's and pytorch-fid's on the same
images and the same (randomly initialised) weights file; the weights lookup, hash check and errors.

Cost: the Inception forward at 299² takes 0.3-8 s per image on the shared 2-core CI machine, and each parity test
runs two implementations over both folders. So by default the network runs at ``VQFAST_EVAL_PARITY_SIZE`` = 75²
(the smallest input it takes; the references are patched to resize to the same size: torch-fidelity's
``INPUT_IMAGE_SIZE``, pytorch-fid's hard-coded interpolate size) on ``VQFAST_EVAL_PARITY_IMAGES`` = 24 images per
side. torch-fidelity: its data reading, extractor, statistics and FID against ours (FID within 1e-3 relative, ~20 s).
pytorch-fid: its data reading, network and statistics against ours; its whole ``calculate_fid_given_paths`` (two to
four 2048² ``sqrtm``: 155 s here) only with ``VQFAST_EVAL_FULL_PARITY=1``; its distance function is compared in
test_metrics.py. The full protocol: ``VQFAST_EVAL_FULL_PARITY=1 VQFAST_EVAL_PARITY_SIZE=299
VQFAST_EVAL_PARITY_IMAGES=300``."""
import os
import warnings

import numpy as np
import pytest
import torch
from eval_helpers import write_images

from vqfast.eval import (
    INCEPTION_FILE,
    GaussianStats,
    InceptionFeatures,
    InceptionWeightsError,
    frechet_distance,
)
from vqfast.eval.inception import resize_bilinear_tf1

N = int(os.environ.get("VQFAST_EVAL_PARITY_IMAGES", "24"))
S = int(os.environ.get("VQFAST_EVAL_PARITY_SIZE", "75"))
FULL = os.environ.get("VQFAST_EVAL_FULL_PARITY") == "1"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid_images")
    real = write_images(root / "real", N, 64, seed=1)
    write_images(root / "recon", N, 64, seed=2, base=real, noise=20.0)
    return root / "real", root / "recon"


class _ResizeTo:
    """torch.nn.functional for pytorch_fid.inception, with its interpolate to 299² sent to (size, size)."""

    def __init__(self, size):
        self.size = size

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    def interpolate(self, x, size=None, **kwargs):
        assert tuple(size) == (299, 299)
        return torch.nn.functional.interpolate(x, size=(self.size, self.size), **kwargs)


def _our_stats(extractor, folder):
    from vqfast.eval.data import iterate_batches, list_eval_images

    stats = GaussianStats(2048, DEVICE)
    for batch in iterate_batches(list_eval_images(folder), size=64, batch_size=8):
        stats.update(extractor(batch))
    return stats.mean_cov()


def _assert_stats_equal(ours, ref):
    (mu, sigma), (mu_ref, sigma_ref) = ours, ref
    scale = float(np.abs(sigma_ref).max())
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-5, atol=1e-6 * float(np.abs(mu_ref).max()))
    np.testing.assert_allclose(sigma, sigma_ref, rtol=1e-4, atol=1e-6 * scale)


def _fid(stats, method):
    return frechet_distance(*stats[0], *stats[1], method=method)


def test_rfid_equals_torch_fidelity(inception_weights, folders, monkeypatch):
    pytest.importorskip("torch_fidelity")
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.utils import create_feature_extractor, extract_featuresdict_from_input_id

    monkeypatch.setattr(FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", S)
    ours = [_our_stats(InceptionFeatures(inception_weights, sha256=None, device=DEVICE, input_size=S), f)
            for f in folders]
    kw = dict(input1=str(folders[0]), input2=str(folders[1]), feature_extractor_weights_path=str(inception_weights),
              cuda=DEVICE == "cuda", verbose=False, cache=False, batch_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor = create_feature_extractor("inception-v3-compat", ["2048"], **kw)
        ref = [fid_features_to_statistics(extract_featuresdict_from_input_id(i, extractor, **kw)["2048"])
               for i in (1, 2)]
    for a, b in zip(ours, ref, strict=True):  # torch-fidelity's own data reading, extractor and statistics
        _assert_stats_equal(a, (b["mu"], b["sigma"]))
    ref_fid = fid_statistics_to_metric(*ref, verbose=False)["frechet_inception_distance"]  # 2048² eigvals: ~5 s
    assert _fid(ours, "eig") == pytest.approx(ref_fid, rel=1e-3)


def test_rfid_equals_pytorch_fid(inception_weights, folders, tmp_path, monkeypatch):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    import pytorch_fid.inception as pf_inception

    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    os.link(inception_weights, hub / "checkpoints" / INCEPTION_FILE)  # pytorch-fid reads the hub cache
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(pf_inception, "F", _ResizeTo(S))
    ours = [_our_stats(InceptionFeatures(None, sha256=None, mode="pytorch-fid", device=DEVICE, input_size=S), f)
            for f in folders]
    model = pf_inception.InceptionV3([3]).to(DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = [fid_score.compute_statistics_of_path(str(f), model, 8, 2048, DEVICE, num_workers=0) for f in folders]
        for a, b in zip(ours, ref, strict=True):  # pytorch-fid's data reading, network and statistics
            _assert_stats_equal(a, b)
        if FULL:  # the whole of calculate_fid_given_paths (two or four 2048² sqrtm: minutes on 2 cores)
            ref_fid = float(fid_score.calculate_fid_given_paths([str(f) for f in folders], batch_size=8,
                                                                device=DEVICE, dims=2048, num_workers=0))
            assert _fid(ours, "sqrtm") == pytest.approx(ref_fid, rel=1e-3)


@pytest.mark.parametrize("hw", [(1, 1), (7, 13), (64, 64), (299, 299), (300, 450)])
def test_tf1_resize_equals_torch_fidelity(hw):
    compat = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")
    x = torch.rand(2, 3, *hw) * 255
    ref = compat.interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    torch.testing.assert_close(resize_bilinear_tf1(x, 299), ref, rtol=0, atol=0)


def test_missing_weights_name_the_file_and_the_place(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(InceptionWeightsError, match=INCEPTION_FILE) as exc:
        InceptionFeatures()
    assert str(tmp_path / "hub" / "checkpoints") in str(exc.value)
    with pytest.raises(InceptionWeightsError, match="do not exist"):
        InceptionFeatures(tmp_path / "nope.pth")


def test_wrong_hash_is_refused_and_opt_out_is_explicit(inception_weights):
    with pytest.raises(InceptionWeightsError, match="sha256"):
        InceptionFeatures(inception_weights)  # the published hash by default
    InceptionFeatures(inception_weights, sha256=None)  # test weights: explicit opt-out


def test_unreadable_or_foreign_weights(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(InceptionWeightsError, match="cannot read"):
        InceptionFeatures(bad, sha256=None)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(InceptionWeightsError, match="do not fit"):
        InceptionFeatures(other, sha256=None)


def test_features_shape_dtype_and_tf32_restored(inception_weights):
    f = InceptionFeatures(inception_weights, sha256=None)
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        out = f((torch.rand(2, 3, 40, 56) * 255).to(torch.uint8))
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
    assert out.shape == (2, 2048) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert float(out.std()) > 0
    with pytest.raises(Exception, match="uint8"):
        f(torch.rand(1, 3, 8, 8))
    assert not np.isnan(out.numpy()).any()
