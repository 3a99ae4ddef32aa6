"""Shared fixtures: a randomly initialised FID Inception saved to a file (no download), small generated images."""
import pytest
import torch


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    from vqfast.eval import random_inception_state_dict

    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.save(random_inception_state_dict(seed=0), path)
    finally:
        torch.set_num_threads(saved)
    return path


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The Inception forward on 2 shared cores: one intra-op thread avoids the oversubscription that made it 20×
    slower here (spinning OpenMP workers); restored after each test."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
