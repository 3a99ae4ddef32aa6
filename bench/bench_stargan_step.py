"""Latent StarGAN v2 training step (seed 003: D step + lazy R1 + G/E/F step): backend="triton" (AdaIN and instance
norm statistics in the channel_stats kernel) vs backend="torch" (reference statistics). Seed sizes on CUDA (4×32×32,
base_dim 256, 4 AdaIN res-blocks, batch 8, bf16 autocast); a tiny fp32 shape on CPU (torch only)."""
import pytest
import torch

from benchutil import CUDA, DEVICE, QUICK, needs_cuda, run
from vqfast.train.config import build
from vqfast.train.families.stargan.config import StarGANConfig
from vqfast.train.families.stargan.task import StarGANLatentTask

if CUDA:
    SIZES = [(8, 32, 256, 4), (8, 64, 256, 4)]        # (batch, latent size, base_dim, n_res_blocks)
elif QUICK:
    SIZES = [(2, 16, 32, 1)]
else:
    SIZES = [(4, 32, 64, 2)]


def sid(s):
    return "b{}_{}px_c{}_r{}".format(*s)


def make_step(size, backend, r1_every_step):
    b, px, base, blocks = size
    cfg = build(StarGANConfig, {"backend": backend,
                                "model": {"type": "stargan_v2_latent", "base_dim": base, "n_res_blocks": blocks},
                                "training": {"use_amp": CUDA},
                                "loss": {"r1_interval": 1 if r1_every_step else 16, "r1_counter": "global",
                                         "ds_schedule": "iteration"},  # no loader: schedules by global step
                                "data": {"synthetic": True}, "train": {"batch_size": b}}, "bench")
    torch.manual_seed(0)
    task = StarGANLatentTask(cfg, DEVICE)
    g = torch.Generator().manual_seed(0)
    batch = {"content": torch.randn(b, 4, px, px, generator=g).to(DEVICE),
             "x_ref": torch.randn(b, 4, px, px, generator=g).to(DEVICE),
             "y_src": torch.zeros(b, dtype=torch.long, device=DEVICE),
             "y_trg": torch.ones(b, dtype=torch.long, device=DEVICE)}
    state = {"step": 0}

    def step():
        task.training_step(batch, state["step"])
        state["step"] += 1
    return step


@pytest.mark.parametrize("size", SIZES, ids=sid)
@pytest.mark.parametrize("r1", [False, True], ids=["no_r1", "r1_step"])
def test_stargan_step_torch(benchmark, size, r1):
    run(benchmark, "stargan_step", sid(size) + ("_r1" if r1 else ""), "torch", make_step(size, "torch", r1))


@needs_cuda
@pytest.mark.parametrize("size", SIZES, ids=sid)
@pytest.mark.parametrize("r1", [False, True], ids=["no_r1", "r1_step"])
def test_stargan_step_triton(benchmark, size, r1):
    run(benchmark, "stargan_step", sid(size) + ("_r1" if r1 else ""), "triton", make_step(size, "triton", r1),
        ref_fn=make_step(size, "torch", r1))
