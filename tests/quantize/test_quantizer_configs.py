"""model.quantizer in the VQ family's config: every type builds its quantizer, runs a forward through the
VQGAN, and the cross-field rules name the keys."""
import pytest
import torch

from vqfast.errors import ConfigError
from vqfast.train import load_config
from vqfast.train.families.vq.models import build_model

TINY = ["model.ddconfig.ch=8", "model.ddconfig.ch_mult=[1,2]", "model.ddconfig.num_res_blocks=1",
        "model.ddconfig.attn_resolutions=[]", "data.size=16", "perceptual.backbone=random"]
CLASSES = {"vq": "VectorQuantizer", "ema": "EMAVectorQuantizer", "fsq": "FSQ", "rfsq": "ResidualFSQ",
           "lfq": "LFQ", "bsq": "BSQ", "rvq": "ResidualVQ", "simvq": "SimVQ", "ibq": "IBQ"}


@pytest.mark.parametrize("qtype", sorted(CLASSES))
def test_every_quantizer_type_builds_and_runs(tmp_path, qtype):
    sets = [f"run_dir={tmp_path}", "model.n_embed=64" if qtype not in ("fsq", "rfsq", "lfq", "bsq") else "seed=0",
            "model.embed_dim=6", f"model.quantizer.type={qtype}", *TINY]
    if qtype in ("fsq", "rfsq"):
        sets.append("model.quantizer.levels=[5,5,4,3,3,3]")
    cfg = load_config("vqgan_f16_1024", sets)
    model = build_model(cfg.model, "torch")
    assert type(model.quantize).__name__ == CLASSES[qtype]
    vq_loss, recon, perplexity, indices = model.vq_forward(torch.randn(2, 3, 16, 16))
    assert recon.shape == (2, 3, 16, 16) and indices.shape == (2, 8, 8) and torch.isfinite(vq_loss)
    assert int(indices.max()) < model.vocab_size
    (recon.mean() + vq_loss).backward()


def test_cross_field_rules_name_the_keys(tmp_path):
    with pytest.raises(ConfigError, match="model.n_embed=4096"):
        load_config("vqgan_f16_1024", [f"run_dir={tmp_path}", "model.quantizer.type=lfq", "model.n_embed=4096"])
    with pytest.raises(ConfigError, match="needs model.type=vqgan"):
        load_config("emavq_f16_1024", [f"run_dir={tmp_path}", "model.quantizer.type=fsq"])
    with pytest.raises(ConfigError, match="model.quantizer.type='kmeans'"):
        load_config("quickstart", [f"run_dir={tmp_path}", "model.quantizer.type=kmeans"])
