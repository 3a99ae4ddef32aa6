"""Shared fixtures: a randomly initialised FID Inception saved to a file (no download), small generated images."""
import pytest
import torch


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    from vqfast.eval import random_inception_state_dict

    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    torch.save(random_inception_state_dict(seed=0), path)
    return path
