"""Tiny DinoVQ builders shared by the DinoVQ tests (CPU, torch backend, seconds per test)."""
import pytest
import torch

from vqfast.losses.dinovq import DinoVQLoss
from vqfast.models.dinovq import DinoVQModel
from vqfast.train.families.dinovq.config import LOSS_KEYS

TINY = {"img_size": 32, "patch_size": 8, "encoder_embed_dim": 32, "encoder_depth": 1, "encoder_num_heads": 2,
            "num_register_tokens": 1, "codebook_size": 16, "dino_decoder_depth": 1, "dino_decoder_num_heads": 2, "dino_dim": 24,
            "image_decoder_dim": 32, "image_decoder_depth": 1, "image_decoder_num_heads": 2, "backend": "torch",
            "kmeans_iters": 3, "disc_dim": 8, "disc_num_layers": 2}


def tiny_model(**overrides) -> DinoVQModel:
    """Seed-004 style: one kwargs dict for the networks and their loss (split as the family builder does)."""
    torch.manual_seed(0)
    kwargs = {**TINY, **overrides}
    loss = {k: kwargs.pop(k) for k in LOSS_KEYS if k in kwargs}
    return DinoVQModel(**kwargs, loss_fn=DinoVQLoss(**loss, out_chans=kwargs.get("out_chans", 3)))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1  # (B, C, H, W) in [-1, 1]
    feats = torch.randn(4, 4, 4, 24, generator=g)  # (B, h, w, dino_dim)
    return imgs, feats
