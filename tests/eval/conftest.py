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
def _one_thread():
    """One torch intra-op thread and one BLAS thread: on the 2 shared CI cores the oversubscribed OpenMP/OpenBLAS
    workers made the Inception forward 20× and the 2048² eigvals 10× slower; restored after each test."""
    from threadpoolctl import threadpool_limits

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(saved)
