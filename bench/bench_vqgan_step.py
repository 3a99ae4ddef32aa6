"""A full VQGAN training step (G phase + D phase) with backend=triton vs backend=torch: step time, samples/s,
peak memory and the quantizer's share of the step. CUDA: taming's f16 VQGAN at 256², K=16384 (issue 4 target:
>= 1.15x faster steps, lower peak memory). CPU: the torch path at a tiny size, as a smoke run."""
import pytest
import torch

from benchutil import CUDA, DEVICE, QUICK, RESULTS, Row, needs_cuda, peak_extra_mb, sync, time_ms
from vqfast.train import load_config
from vqfast.train.families.vq.task import VQTask

if CUDA:
    SHAPE = dict(batch=4, size=256, n_embed=16384, sets=[])
else:
    SHAPE = dict(batch=2, size=32, n_embed=64, sets=["model.ddconfig.ch=16", "model.ddconfig.ch_mult=[1,2]",
                                                      "model.ddconfig.num_res_blocks=1",
                                                      "model.ddconfig.attn_resolutions=[]", "loss.disc_ndf=8",
                                                      "model.embed_dim=16", "model.ddconfig.z_channels=16"])


def build(backend: str) -> VQTask:
    s = SHAPE
    cfg = load_config("vqgan_f16_1024", [
        f"backend={backend}", f"model.n_embed={s['n_embed']}", f"data.size={s['size']}",
        f"train.batch_size={s['batch']}", "perceptual.backbone=random",
        "loss.disc_start=0", "loss.disc_train_start=0", "train.device=" + DEVICE, *s["sets"]])
    torch.manual_seed(0)
    return VQTask(cfg, torch.device(DEVICE))


def step_fn(task: VQTask, x: torch.Tensor):
    counter = {"step": 0}

    def fn():
        task.training_step(x, counter["step"])
        counter["step"] += 1
    return fn


def quantizer_ms(task: VQTask, x: torch.Tensor) -> float:
    """Quantizer forward+backward alone on this step's encoder output shape."""
    with torch.no_grad():
        h = task.model.quant_conv(task.model.encoder(x))                # (B, C, h, w)
    z = h.detach().requires_grad_()

    def fn():
        z_q, loss, _ = task.model.quantize(z)
        torch.autograd.grad(z_q.sum() + loss, z)
    return time_ms(fn)


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_cuda)])
def test_vqgan_training_step(benchmark, backend):
    task = build(backend)
    task.train()
    x = torch.rand(SHAPE["batch"], 3, SHAPE["size"], SHAPE["size"], device=DEVICE) * 2 - 1
    fn = step_fn(task, x)
    fn()
    sync()
    benchmark.pedantic(lambda: (fn(), sync()), rounds=2 if QUICK or not CUDA else 10, iterations=1, warmup_rounds=1)
    ms = time_ms(fn, reps=None if CUDA else 2)
    qms = quantizer_ms(task, x)
    row = Row("vqgan_step", f"B{SHAPE['batch']}-{SHAPE['size']}px-K{SHAPE['n_embed']}", f"backend={backend}", ms,
              peak_mb=peak_extra_mb(fn), note=f"{1e3 * SHAPE['batch'] / ms:.1f} samples/s, quantizer {100 * qms / ms:.1f}%")
    if backend == "triton":
        ref = build("torch")
        ref.train()
        ref_fn = step_fn(ref, x)
        row.ref_ms = time_ms(ref_fn)
        ref_peak = peak_extra_mb(ref_fn)
        benchmark.extra_info["torch_peak_mb"] = ref_peak
        row.note += f", torch peak {ref_peak:.0f} MB"
        # same weights and batch: the two backends pick the same codes
        ref.model.load_state_dict(task.model.state_dict())
        with torch.no_grad():
            _, _, _, idx_t = task.model.vq_forward(x)
            _, _, _, idx_r = ref.model.vq_forward(x)
        assert (idx_t == idx_r).float().mean() > 0.999
    benchmark.extra_info.update({"step_ms": ms, "quantizer_ms": qms, "samples_per_s": 1e3 * SHAPE["batch"] / ms,
                                 "peak_mb": row.peak_mb})
    RESULTS.append(row)
