"""frames_to_model_input vs the pure-torch reference (bit-identical)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vqfast.io import frames_to_model_input, frames_to_model_input_reference


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 3), (2, 3, 7, 5, 3), (3, 2, 16, 16, 1), (1, 5, 9, 11, 4)])
def test_bit_identical_to_reference(shape):
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    c = shape[-1]
    mean = [0.5, 0.45, 0.4, 0.3][:c]
    std = [0.5, 0.2, 0.25, 0.1][:c]
    got = frames_to_model_input(frames, mean, std, num_threads=2)
    ref = frames_to_model_input_reference(frames, mean, std)
    b, t, h, w, _ = shape
    assert got.shape == (b * t, c, h, w) and got.dtype == torch.float32 and got.is_contiguous()
    assert torch.equal(got, ref)


def test_scalar_mean_std_numpy_input_and_every_value():
    frames = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16, 1).repeat(3, axis=-1)
    got = frames_to_model_input(frames, 0.5, 0.5)
    assert torch.equal(got, frames_to_model_input_reference(torch.from_numpy(frames), 0.5, 0.5))
    assert got.min() == -1.0 and got.max() == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        frames_to_model_input(torch.zeros(1, 1, 2, 2, 3), 0.5, 0.5)
    with pytest.raises(ValueError, match="B, T, H, W, C"):
        frames_to_model_input(torch.zeros(1, 2, 2, 3, dtype=torch.uint8), 0.5, 0.5)
    with pytest.raises(ValueError, match="one per channel"):
        frames_to_model_input(torch.zeros(1, 1, 2, 2, 3, dtype=torch.uint8), [0.5, 0.5], 0.5)
    with pytest.raises(ValueError, match="non-zero"):
        frames_to_model_input(torch.zeros(1, 1, 2, 2, 3, dtype=torch.uint8), 0.5, 0.0)


def test_non_contiguous_input_is_handled():
    frames = torch.randint(0, 256, (2, 4, 6, 6, 3), dtype=torch.uint8)[:, ::2]
    assert torch.equal(frames_to_model_input(frames, 0.5, 0.25), frames_to_model_input_reference(frames, 0.5, 0.25))


def test_mean_std_as_tensors():
    frames = torch.randint(0, 256, (1, 2, 4, 4, 3), dtype=torch.uint8)
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.2, 0.2])
    assert torch.equal(frames_to_model_input(frames, mean, std), frames_to_model_input_reference(frames, mean.tolist(), std.tolist()))
