"""torchrun + DDP on CPU (gloo, 2 processes): synced codebooks and weights across ranks, 2 ranks × B/2 = 1 rank × B
for the VQGAN family (VQGAN and EMA-VQ), rank-0-only outputs through the real ``torchrun -m vqfast.train``."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from vqfast.train import load_config
from vqfast.train import trainer as Trainer
from vqfast.train.families.vq.models import build_model

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or shutil.which("torchrun") is None,
                                reason="needs torch.distributed (gloo) and torchrun")

STEPS = 3
TINY = ["model.ddconfig.ch=16", "model.ddconfig.ch_mult=[1,2]", "model.ddconfig.num_res_blocks=1",
        "model.ddconfig.attn_resolutions=[]", "model.ddconfig.z_channels=8",
        "data.size=16", "model.n_embed=16", "model.embed_dim=8", "loss.disc_num_layers=1", "loss.disc_ndf=8",
        "perceptual.backbone=random", "data.clip_len=2", "train.batch_size=4", "data.synthetic_videos=8",
        "data.synthetic_frames=4", "train.progress=false", f"train.max_steps={STEPS}", "train.log_every=1",
        "train.sample_every=100", "train.ckpt_every=100"]
# deterministic for the equivalence: no dropout (quickstart), D never used by G nor trained within the run, and
# none of the quickstart's batch-dependent codebook options (k-means init on, and restarts from, rank 0's batch)
TINY += ["model.restart_dead_codes=false", "model.kmeans_init=false"]
NO_GAN = ["loss.disc_start=1000", "loss.adaptive_weight_before_start=false"]
FAMILIES = {"vqgan": [], "emavq": ["model.type=emavq"]}

WORKER = textwrap.dedent('''
    import json, sys
    import torch, torch.distributed as dist
    from vqfast.train import load_config
    from vqfast.train import trainer as Trainer

    def capture_first_grads(trainer, store):
        opt, inner = trainer.task.opt_ae, trainer.task.opt_ae.step
        names = {id(p): n for n, p in trainer.task.model.named_parameters()}
        def step(*a, **k):
            if not store:
                store.update({names[id(p)]: p.grad.clone() for g in opt.param_groups for p in g["params"]
                              if p.grad is not None})
            return inner(*a, **k)
        opt.step = step

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for name, overrides in json.loads(sys.argv[2]).items():
        trainer = Trainer(load_config("quickstart", overrides))
        grads = {}
        capture_first_grads(trainer, grads)
        trainer.fit()
        state = {f"model.{k}": v for k, v in trainer.task.model.state_dict().items()}
        state.update({f"D.{k}": v for k, v in trainer.task.discriminator.state_dict().items()})
        torch.save({"state": state, "grads": grads}, f"{sys.argv[1]}/{name}_rank{rank}.pt")
    dist.destroy_process_group()
''')


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args, timeout=300):
    """torchrun (as `python -m torch.distributed.run`, so the interpreter under test runs it) on a fresh
    loopback port; one retry when the rendezvous port was taken in between (shared CI machines)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for attempt in range(2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if res.returncode == 0 or "address already in use" not in res.stderr.lower() or attempt:
            break
    assert res.returncode == 0, res.stderr[-5000:]
    return res


def _losses(run_dir):
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {l["step"]: l for l in lines if "train/total_loss" in l}


def test_two_ranks_sync_codebooks_and_match_one_rank(tmp_path):
    refs, runs = {}, {}
    for name, extra in FAMILIES.items():  # 1 rank, batch B (also generates the shared data)
        cfg = load_config("quickstart", [f"run_dir={tmp_path / (name + '_1')}", *TINY, *extra, *NO_GAN])
        trainer = Trainer(cfg)
        grads = {}
        inner, names = trainer.task.opt_ae.step, {id(p): n for n, p in trainer.task.model.named_parameters()}

        def step(*a, _g=grads, _inner=inner, _opt=trainer.task.opt_ae, _names=names, **k):
            if not _g:
                _g.update({_names[id(p)]: p.grad.clone() for gr in _opt.param_groups for p in gr["params"]
                           if p.grad is not None})
            return _inner(*a, **k)

        step._wrapped_by_lr_sched = True  # keep LRScheduler's "optimizer stepped first" check quiet
        trainer.task.opt_ae.step = step
        trainer.fit()
        refs[name] = ({k: v.clone() for k, v in trainer.task.model.state_dict().items()}, grads)
        data = [f"data.root={cfg.data.root}", f"data.val_root={cfg.data.val_root}"]
        runs[name] = [f"run_dir={tmp_path / (name + '_2')}", *TINY, *extra, *NO_GAN, *data]
    # EMA-VQ with the discriminator trained from step 0 (BatchNorm D through its own DDP wrapper)
    runs["emavq_gan"] = [f"run_dir={tmp_path / 'gan_2'}", *TINY, "model.type=emavq", "loss.disc_start=0",
                         "loss.disc_train_start=0", *data]
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    _torchrun(str(worker), str(tmp_path), json.dumps(runs))

    for name in runs:
        r0 = torch.load(tmp_path / f"{name}_rank0.pt", weights_only=True)
        r1 = torch.load(tmp_path / f"{name}_rank1.pt", weights_only=True)
        for k, v in r0["state"].items():
            if "running_" in k:  # BatchNorm statistics are rank-local between DDP's rank-0 broadcasts
                continue
            torch.testing.assert_close(r1["state"][k], v, rtol=0, atol=0, msg=f"{name}: {k} differs across ranks")
        if name.startswith("emavq"):
            assert "model.quantize.embedding.embed_avg" in r0["state"]
    for name, (ref_state, ref_grads) in refs.items():
        r0 = torch.load(tmp_path / f"{name}_rank0.pt", weights_only=True)
        # first step: DDP's averaged gradient of 2 × B/2 = the gradient of 1 × B (float rounding only)
        assert set(r0["grads"]) == set(ref_grads)
        for k, g in ref_grads.items():
            torch.testing.assert_close(r0["grads"][k], g, rtol=1e-4, atol=1e-6, msg=f"{name}: grad {k}")
        # per-step losses (averaged over ranks at log time) match
        one, two = _losses(tmp_path / f"{name}_1"), _losses(tmp_path / f"{name}_2")
        assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))
        for step in one:
            for key in ("train/total_loss", "train/rec_loss", "train/quant_loss"):
                torch.testing.assert_close(two[step][key], one[step][key], rtol=1e-4, atol=1e-6,
                                           msg=f"{name} step {step} {key}")
        # weights after k steps: Adam turns rounding-level noise on (near-)zero gradients into sign flips of
        # up to 2·lr per step, so the whole update is compared (measured ~1e-2; unsynced gradients give O(1))
        two_state = {k.removeprefix("model."): v for k, v in r0["state"].items() if k.startswith("model.")}
        torch.manual_seed(0)  # the engine's initial weights (seed 0, model built first)
        init = build_model(load_config("quickstart", [*TINY, *FAMILIES[name]]).model, "auto").state_dict()
        keys = [k for k, v in ref_state.items() if v.is_floating_point() and "quantize" not in k]
        num = sum((two_state[k].float() - ref_state[k].float()).pow(2).sum() for k in keys)
        den = sum((ref_state[k].float() - init[k].float()).pow(2).sum() for k in keys)
        ratio = float((num / den).sqrt())
        assert ratio < 3e-2, f"{name}: the 2-rank update differs from the 1-rank update by {ratio:.2e} (relative)"
        torch.testing.assert_close(two_state["quantize.embedding.weight"], ref_state["quantize.embedding.weight"],
                                   rtol=1e-3, atol=1e-5)


def test_torchrun_cli_rank0_writes_and_resumes(tmp_path):
    run = tmp_path / "cli"
    args = ["-m", "vqfast.train", "--config", "quickstart", "--set", f"run_dir={run}"]
    for kv in (*TINY, "model.type=emavq", "train.ckpt_every=2", "train.max_steps=2"):
        args += ["--set", kv]
    res = _torchrun(*args)
    assert json.loads(res.stdout.strip().splitlines()[-1])["step"] == 2  # printed by rank 0 only
    assert len(res.stdout.strip().splitlines()) == 1
    assert sorted(_losses(run)) == [1, 2]  # one metrics line per step, not one per rank
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["rng_per_rank"]) == 2
    assert not any(k.startswith("module.") for k in ck["modules"]["model"])  # unwrapped names
    res = _torchrun(*args[:-2], "--set", "train.max_steps=3", "--resume", str(run))
    assert sorted(_losses(run)) == [1, 2, 3]
    with pytest.raises(AssertionError, match="not divisible by world_size=2"):
        _torchrun(*args, "--set", "train.batch_size=3")


FAMILY_SMOKE = {
    "stargan_v2_latent": ["seed=3", "backend=torch", "model.base_dim=32", "model.n_res_blocks=1",
                          "model.mapping_hidden_dim=32", "model.d_dim=16", "model.style_dim=16", "model.latent_dim=8",
                          "training.use_amp=false", "loss.r1_interval=2", "data.resolution=16",
                          "data.synthetic_per_domain=12", "data.synthetic_shards_per_domain=1",
                          "data.reference_pool=8", "train.batch_size=4"],
    "dinovq": ["data.synthetic_images=4"],
    "quantart_stage2": [],
}


@pytest.mark.parametrize("family", sorted(FAMILY_SMOKE))
def test_torchrun_two_steps_other_families(tmp_path, family):
    """Every other family trains 2 steps under torchrun (2 ranks, gloo) and rank 0 writes its outputs."""
    run = tmp_path / family
    args = ["-m", "vqfast.train", "--config", family]
    for kv in (f"run_dir={run}", "train.max_steps=2", "train.device=cpu", "train.progress=false",
               "train.log_every=1", *FAMILY_SMOKE[family]):
        args += ["--set", kv]
    _torchrun(*args)
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines if "samples_per_s" in l] == [1, 2]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["world_size"] == 2
