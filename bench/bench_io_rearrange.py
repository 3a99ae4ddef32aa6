"""frames_to_model_input (Rust, N threads) vs the torch CPU reference (torch.set_num_threads(N)).

uint8 (B, T, H, W, C) -> float32 ((B*T), C, H, W), (x / 255 - mean) / std; outputs must be
bit-identical. Sizes: VQFAST_BENCH_IO_RB/RT/RS (default 2, 4, 64; the target is 8, 16, 256),
threads VQFAST_BENCH_IO_THREADS (2).
  VQFAST_BENCH_IO_RB=8 VQFAST_BENCH_IO_RT=16 VQFAST_BENCH_IO_RS=256 python -m pytest bench/bench_io_rearrange.py
"""
from __future__ import annotations

import os

import pytest
import torch

B = int(os.environ.get("VQFAST_BENCH_IO_RB", "2"))
T = int(os.environ.get("VQFAST_BENCH_IO_RT", "4"))
S = int(os.environ.get("VQFAST_BENCH_IO_RS", "64"))
THREADS = int(os.environ.get("VQFAST_BENCH_IO_THREADS", "2"))
MEAN, STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]


@pytest.fixture(scope="module")
def frames():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (B, T, S, S, 3), dtype=torch.uint8, generator=g)  # (B, T, H, W, C)


@pytest.mark.parametrize("provider", ["vqfast", "torch"])
def test_frames_to_model_input(benchmark, frames, provider):
    from vqfast.io import frames_to_model_input, frames_to_model_input_reference

    old = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        if provider == "vqfast":
            fn = lambda: frames_to_model_input(frames, MEAN, STD, num_threads=THREADS)  # noqa: E731
        else:
            # contiguous output like the Rust path produces (the model needs NCHW-contiguous input)
            fn = lambda: frames_to_model_input_reference(frames, MEAN, STD).contiguous()  # noqa: E731
        benchmark.group = f"frames_to_model_input B={B} T={T} {S}^2 N={THREADS}"
        out = benchmark(fn)
        ref = frames_to_model_input_reference(frames, MEAN, STD)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(out, ref)
    gb = (frames.numel() + 4 * frames.numel()) / 1e9
    if benchmark.stats is not None:
        benchmark.extra_info["GB_per_s"] = round(gb / benchmark.stats.stats.mean, 2)
