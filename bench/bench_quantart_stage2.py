"""QuantArt stage-2 training step (G phase + D phase) at QuantArt's shape: B=8, 256², f16 → 16×16×256 latents,
K=1024, 6 SGA blocks, D on latents. Providers: backend="triton" (nearest_code + channel_stats kernels) vs
backend="torch" (references); the triton row carries the torch/triton ratio. CUDA only (the CPU shape is a
smoke check with VQFAST_BENCH_QUICK=1)."""
import pytest
import torch

from benchutil import CUDA, QUICK, needs_cuda, run

B, SIZE = (8, 256) if not QUICK else (2, 128)


def _task(backend: str, tmp_path):
    from vqfast.data.unpaired import make_paintings
    from vqfast.train.config import build
    from vqfast.train.families.quantart.config import Stage2Config
    from vqfast.train.families.quantart.task import QuantArtStage2Task

    style = make_paintings(tmp_path / "style", num_images=4, size=SIZE, seed=0)
    cfg = build(Stage2Config, {"run_dir": str(tmp_path / backend), "backend": backend,
                               "model": {"style_root": str(style)},
                               "data": {"root": str(tmp_path), "kind": "images", "size": SIZE},
                               "train": {"batch_size": B, "progress": False}}, "bench")
    task = QuantArtStage2Task(cfg, torch.device("cuda"))
    task.train()
    return task


@needs_cuda
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_quantart_stage2_step(benchmark, tmp_path):
    g = torch.Generator(device="cuda").manual_seed(0)
    content = torch.rand(B, 3, SIZE, SIZE, device="cuda", generator=g) * 2 - 1
    style = torch.rand(B, 3, SIZE, SIZE, device="cuda", generator=g) * 2 - 1
    tasks = {b: _task(b, tmp_path) for b in ("torch", "triton")}
    steps = {b: 0 for b in tasks}

    def step(b):
        def fn():
            tasks[b].training_step((content, style), steps[b])
            steps[b] += 1
        return fn

    run(benchmark, "quantart_stage2_step", f"B{B}x{SIZE}^2->16x16x256", "triton", step("triton"),
        ref_fn=step("torch"), note="G+D phase, ratio = torch/triton")
