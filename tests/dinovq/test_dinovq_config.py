"""DinoVQ's typed config (unknown keys rejected, bounds, derived keys) and the shipped dinovq configs."""
import pytest

from vqfast.errors import ConfigError
from vqfast.train import load_config
from vqfast.train.config import build
from vqfast.train.families.dinovq.config import DinoVQConfig, DinoVQModelConfig

PRESETS = ("dinovq", "dinovq_high_quality", "dinovq_fast", "dinovq_semantic")


def _build(model: dict, **top):
    return build(DinoVQConfig, {"model": model, "data": {"synthetic": True, "kind": "images", "size": 224}, **top},
                 "x.yaml")


def test_unknown_key_is_rejected_naming_it():
    with pytest.raises(ConfigError, match="'model.codebok_size' — did you mean 'model.codebook_size'"):
        _build({"codebok_size": 1024})
    with pytest.raises(ConfigError, match="model.teacher.colour"):
        _build({"teacher": {"colour": "blue"}})


def test_bad_values_are_rejected():
    with pytest.raises(ConfigError, match="residual_grad"):
        _build({"residual_grad": "maybe"})
    with pytest.raises(ConfigError, match="data.size=224 is not divisible by model.patch_size=13"):
        _build({"patch_size": 13})
    with pytest.raises(ConfigError, match="model.codebook_size='lots'"):
        _build({"codebook_size": "lots"})
    with pytest.raises(ConfigError, match="model.vq_decay=1.5: must be <= 1"):
        _build({"vq_decay": 1.5})
    with pytest.raises(ConfigError, match="head dim 10 must be divisible by 4"):
        _build({"encoder_embed_dim": 20, "encoder_num_heads": 2})


def test_defaults_are_the_seed_sizes():
    m = _build({}).model
    assert (m.img_size, m.patch_size, m.encoder_embed_dim, m.codebook_size) == (224, 16, 768, 8192)
    assert (m.use_gan, m.use_perceptual, m.disc_start, m.disc_weight) == (False, False, 10000, 0.5)
    assert _build({}).train.lr == 1e-4 and DinoVQModelConfig().img_size is None  # derived from data.size


@pytest.mark.parametrize("name", PRESETS)
def test_shipped_configs_load(name, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # the GPU-sized values, no cpu_overrides
    m = load_config(name, ["train.max_steps=2"]).model
    assert (m.img_size, m.patch_size, m.encoder_embed_dim, m.codebook_size) == (224, 16, 768, 8192)
    if name == "dinovq_high_quality":
        assert m.use_perceptual and m.use_gan and m.disc_adaptive_weight and m.disc_start == 10000
    if name == "dinovq_semantic":
        assert (m.dino_loss_weight, m.recon_loss_weight, m.vq_loss_weight) == (2.0, 1.0, 0.5)
    if name == "dinovq_fast":
        assert not m.use_gan and not m.use_perceptual
