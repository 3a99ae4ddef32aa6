"""Shared fixtures of the latent StarGAN tests: single-threaded torch (the CI box is small and shared;
tiny convs run ~10× faster on one thread) and a tiny config."""
import pytest
import torch

from vqfast.train.config import build
from vqfast.train.families.stargan.config import StarGANConfig


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = {
    "seed": 3,
    "backend": "torch",
    "model": {"type": "stargan_v2_latent", "base_dim": 32, "n_res_blocks": 1, "mapping_hidden_dim": 32,
              "d_dim": 16, "style_dim": 16, "latent_dim": 8},
    "training": {"use_amp": False},
    "loss": {"r1_interval": 2},
    "data": {"synthetic": True, "resolution": 16, "synthetic_per_domain": 12, "synthetic_shards_per_domain": 1,
             "reference_pool": 8},
    "train": {"batch_size": 4, "max_steps": 10},
}


def tiny_config(**sections):
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY.items()}
    for section, values in sections.items():
        if isinstance(values, dict):
            raw[section] = {**raw.get(section, {}), **values}
        else:
            raw[section] = values
    return build(StarGANConfig, raw, "tiny test config")


@pytest.fixture
def make_config():
    return tiny_config
