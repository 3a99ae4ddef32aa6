"""Fixtures for the vqfast.io tests."""
import pytest


@pytest.fixture
def shard_dir(tmp_path):
    return str(tmp_path / "shards")
