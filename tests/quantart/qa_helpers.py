"""Tiny QuantArt shapes shared by the tests (CPU, seconds)."""
import pytest
import torch

DD = {"ch": 16, "out_ch": 3, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
      "in_channels": 3, "resolution": 16, "z_channels": 16, "double_z": False}
N_EMBED, EMBED_DIM = 32, 16


@pytest.fixture
def dd():
    return dict(DD)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
