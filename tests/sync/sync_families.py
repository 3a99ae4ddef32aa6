"""Tiny tasks of every family for the sync-free step tests (CPU, seconds each): name -> builder(tmp, backend)
returning (task, make_batch(step)). Sizes follow the families' own tests (tests/quantart, tests/dinovq, ...)."""
from __future__ import annotations

import torch

from vqfast.train import load_config

CPU = torch.device("cpu")
_TINY_VQGAN = ["model.ddconfig.ch=16", "model.ddconfig.ch_mult=[1,2]", "model.ddconfig.num_res_blocks=1",
               "model.ddconfig.attn_resolutions=[]", "model.ddconfig.z_channels=16", "model.embed_dim=16",
               "model.n_embed=32", "loss.disc_ndf=8", "loss.disc_num_layers=1", "perceptual.backbone=random",
               "loss.disc_start=0", "loss.disc_train_start=0", "data.size=16", "train.batch_size=2",
               "train.precision=fp32"]


def _images(b: int, size: int):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    return lambda step: x


def vqgan(tmp, backend, name="vqgan_f16_1024", *extra):
    from vqfast.train.families.vq.task import VQTask

    cfg = load_config(name, [f"backend={backend}", f"run_dir={tmp}/run", "train.device=cpu", *_TINY_VQGAN, *extra])
    return VQTask(cfg, CPU), _images(2, 16)


def emavq(tmp, backend):
    return vqgan(tmp, backend, "emavq_f16_1024", "loss.perceptual_weight=0")   # LPIPS is covered by vqgan


def vqgan_actnorm(tmp, backend):
    """taming's ActNorm discriminator: its data-dependent init reads `initialized` once (first forward)."""
    return vqgan(tmp, backend, "vqgan_f16_1024", "loss.use_actnorm=true", "loss.perceptual_weight=0")


def vqvae(tmp, backend):
    from vqfast.train.families.vq.task import VQTask

    cfg = load_config("vqvae_256", [f"backend={backend}", f"run_dir={tmp}/run", "train.device=cpu",
                                    "model.vocab_size=32", "model.n_init=8", "model.ch=8", "model.ch_mult=[1,2]",
                                    "model.num_res_blocks=1", "model.attn_resolutions=[]", "data.size=16",
                                    "data.clip_len=1", "train.batch_size=2"])
    return VQTask(cfg, CPU), _images(2, 16)


def vqvae2(tmp, backend):
    from vqfast.train.families.vq.task import VQTask

    cfg = load_config("vqvae2_256", [f"backend={backend}", f"run_dir={tmp}/run", "train.device=cpu",
                                     "model.hidden_channels=8", "model.res_channels=4", "model.nb_res_layers=1",
                                     "model.embed_dim=8", "model.nb_entries=16", "data.size=16", "data.clip_len=1",
                                     "train.batch_size=2"])
    return VQTask(cfg, CPU), _images(2, 16)


_QA_DD = {"ch": 16, "out_ch": 3, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
          "in_channels": 3, "resolution": None, "z_channels": 16, "double_z": False}


def quantart1(tmp, backend):
    from vqfast.train.config import build
    from vqfast.train.families.quantart.config import Stage1Config
    from vqfast.train.families.quantart.task import QuantArtStage1Task

    cfg = build(Stage1Config, {
        "run_dir": f"{tmp}/s1", "backend": backend,
        "model": {"n_embed": 32, "embed_dim": 16, "ddconfig": dict(_QA_DD), "freeze_decoder": True},
        "loss": {"disc_start": 0, "perceptual_weight": 0.0, "disc_num_layers": 1, "disc_ndf": 8},
        "perceptual": {"backbone": "random"}, "data": {"synthetic": True, "kind": "images", "size": 16},
        "train": {"max_steps": 1, "batch_size": 2, "lr": 1e-3, "progress": False}}, "sync test")
    return QuantArtStage1Task(cfg, CPU), _images(2, 16)


def quantart2(tmp, backend):
    from vqfast.data.unpaired import make_paintings
    from vqfast.train.config import build
    from vqfast.train.families.quantart.config import Stage2Config
    from vqfast.train.families.quantart.task import QuantArtStage2Task

    style = make_paintings(tmp / "style", num_images=4, size=16, seed=0)
    model = {"n_embed": 32, "embed_dim": 16, "block_num": 2, "ddconfig": dict(_QA_DD), "lossconfig": {"disc_ndf": 8},
             "style_root": str(style)}
    cfg = build(Stage2Config, {"run_dir": f"{tmp}/run", "backend": backend, "model": model,
                               "data": {"root": str(tmp), "kind": "images", "size": 16},
                               "train": {"max_steps": 2, "batch_size": 2, "lr": 1e-3, "progress": False}}, "sync test")
    task = QuantArtStage2Task(cfg, CPU)
    content = _images(2, 16)(0)
    styles = [task.style_images(task.style.batch(s, 2)) for s in range(4)]   # read outside the guarded step
    return task, lambda step: (content, styles[step % 4])


def dinovq(tmp, backend):
    from vqfast.data.synthetic import make_images
    from vqfast.train.families.dinovq.task import DinoVQTask

    make_images(tmp / "imgs", num_images=2, size=64)
    cfg = load_config("dinovq_high_quality", [
        "train.device=cpu", f"run_dir={tmp}/run", f"backend={backend}", "model.disc_start=0",
        "model.use_perceptual=false", f"data.root={tmp / 'imgs'}", "model.teacher.kind=random",
        "model.disc_num_layers=2", "model.disc_dim=8"])
    task = DinoVQTask(cfg, CPU)
    x = _images(2, 64)(0)
    feats = task.teacher(x)
    return task, lambda step: (x, feats)


def stargan(tmp, backend):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "stargan"))
    from sg_helpers import tiny_config

    from vqfast.train.families.stargan.task import StarGANLatentTask

    # the Triton interpreter runs one channel_stats program per (sample, channel): keep B * C small there
    small = {"model": {"base_dim": 8, "mapping_hidden_dim": 8, "d_dim": 8, "style_dim": 8},
             "data": {"resolution": 8}, "train": {"batch_size": 2}} if backend == "triton" else {}
    cfg = tiny_config(backend=backend, **small)
    StarGANLatentTask.prepare_data(cfg, tmp)
    torch.manual_seed(0)
    task = StarGANLatentTask(cfg, "cpu")
    task.build_loader(batch_size=cfg.train.batch_size)
    batches = []
    for step, batch in enumerate(task.loader):            # loader and host-side batch prep outside the guard
        batches.append(task.prepare_batch(batch, step)[0])
        if len(batches) == 3:
            break
    return task, lambda step: batches[step % len(batches)]


FAMILIES = {"vqgan": vqgan, "vqgan_actnorm": vqgan_actnorm, "emavq": emavq, "vqvae": vqvae, "vqvae2": vqvae2, "quantart_stage1": quantart1,
            "quantart_stage2": quantart2, "dinovq": dinovq, "stargan": stargan}
