"""DinoVQModelConfig (typed, unknown keys rejected) and the shipped dinovq configs."""
import pytest
from vqfast.train.dinovq_config import DinoVQModelConfig
from vqfast.train.errors import ConfigError

PRESETS = ("dinovq", "dinovq_high_quality", "dinovq_fast", "dinovq_semantic")


def test_unknown_key_is_rejected_naming_it():
    with pytest.raises(ConfigError, match="codebok_size"):
        DinoVQModelConfig.from_dict({"codebok_size": 1024})
    with pytest.raises(ConfigError, match="colour"):
        DinoVQModelConfig.from_dict({"teacher": {"colour": "blue"}})


def test_bad_values_are_rejected():
    with pytest.raises(ConfigError, match="residual_grad"):
        DinoVQModelConfig.from_dict({"residual_grad": "maybe"})
    with pytest.raises(ConfigError, match="patch_size"):
        DinoVQModelConfig.from_dict({"img_size": 100, "patch_size": 16})
    with pytest.raises(ConfigError, match="codebook_size"):
        DinoVQModelConfig.from_dict({"codebook_size": "lots"})


def test_defaults_are_the_seed_sizes():
    cfg = DinoVQModelConfig()
    assert (cfg.img_size, cfg.patch_size, cfg.encoder_embed_dim, cfg.codebook_size) == (224, 16, 768, 8192)
    assert (cfg.use_gan, cfg.use_perceptual, cfg.disc_start, cfg.disc_weight) == (False, False, 10000, 0.5)


@pytest.mark.parametrize("name", PRESETS)
def test_shipped_configs_load(name, dinovq_registered, monkeypatch):
    from vqfast.train.loading import load_config
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # the GPU-sized values, no cpu_overrides
    cfg = load_config(name, ["train.max_steps=2"])
    m = cfg.model
    assert isinstance(m, DinoVQModelConfig)
    assert (m.img_size, m.patch_size, m.encoder_embed_dim, m.codebook_size) == (224, 16, 768, 8192)
    if name == "dinovq_high_quality":
        assert m.use_perceptual and m.use_gan and m.disc_adaptive_weight and m.disc_start == 10000
    if name == "dinovq_semantic":
        assert (m.dino_loss_weight, m.recon_loss_weight, m.vq_loss_weight) == (2.0, 1.0, 0.5)
    if name == "dinovq_fast":
        assert not m.use_gan and not m.use_perceptual
