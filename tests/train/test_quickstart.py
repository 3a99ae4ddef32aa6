"""The shipped quickstart as a newcomer meets it: 64² frames generated on disk (not upsampled for the grid),
sample-grid tiles of at least 64², and the recipe the README's set-up section states (GAN schedule, codebook
restarts, steps) is the one the config ships."""
import re
from pathlib import Path

import torch
from PIL import Image

from vqfast.train import load_config
from vqfast.train.__main__ import main
from vqfast.train.families.vq.config import VQGANModelConfig
from vqfast.train.families.vq.models import build_model

README = Path(__file__).resolve().parents[2] / "README.md"
PAD = 2  # vqfast.train.engine.samples.tile_rows' white border


def test_quickstart_writes_64px_frames_and_grid_tiles(tmp_path, capsys):
    run_dir = tmp_path / "run"
    rc = main(["--config", "quickstart", "--set", "train.max_steps=2", f"run_dir={run_dir}", "train.progress=false"])
    assert rc == 0, capsys.readouterr().err
    frame = next((run_dir / "data" / "train").rglob("*.jpg"))
    with Image.open(frame) as im:
        assert im.size[0] >= 64 and im.size[0] == im.size[1], im.size  # the data itself is 64²
        size = im.size[0]
    pngs = sorted((run_dir / "samples").glob("*.png"))
    assert pngs
    with Image.open(pngs[-1]) as grid:
        w, h = grid.size
    tile = (h - PAD) // 2 - PAD  # two rows: inputs | reconstructions
    assert tile == size >= 64, (grid.size, size)
    assert (w - PAD) % (tile + PAD) == 0 and (w - PAD) // (tile + PAD) >= 4, grid.size


def _setup_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Set-up")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_readme_states_the_shipped_quickstart_recipe():
    cfg = load_config("quickstart")
    section = _setup_section()
    stated = dict(re.findall(r"`([a-z_.]+): ([^`]+)`", section))  # `key: value` (a `key=value` is an override)
    shipped = {"data.size": cfg.data.size, "train.max_steps": cfg.train.max_steps,
               "train.use_gan": str(cfg.train.use_gan).lower(), "loss.disc_train_start": cfg.loss.disc_train_start,
               "loss.disc_start": cfg.loss.disc_start, "loss.disc_weight": cfg.loss.disc_weight,
               "model.restart_dead_codes": str(cfg.model.restart_dead_codes).lower(),
               "model.kmeans_init": str(cfg.model.kmeans_init).lower()}
    for key, value in shipped.items():
        assert key in stated, f"README set-up section does not state `{key}: ...`"
        assert stated[key].strip() == str(value), (key, stated[key], value)
    assert cfg.train.use_gan and cfg.loss.disc_train_start < cfg.loss.disc_start < cfg.train.max_steps
    assert cfg.data.val_root is None and cfg.data.synthetic  # val/psnr is on the generated held-out videos


def test_codebook_options_reach_the_quantizer():
    for mtype in ("vqgan", "emavq"):
        cfg = load_config("quickstart", [f"model.type={mtype}", "model.dead_code_steps=7", "model.kmeans_iters=3"])
        q = build_model(cfg.model, "torch").quantize
        assert (q.restart_dead_codes, q.kmeans_init, q.dead_code_steps, q.kmeans_iters) == (True, True, 7, 3), mtype
    off = VQGANModelConfig()  # taming's behaviour stays the default
    assert not off.restart_dead_codes and not off.kmeans_init
    q = build_model(load_config("quickstart", ["model.restart_dead_codes=false", "model.kmeans_init=false"]).model,
                    "torch").quantize
    assert not q.restart_dead_codes and not q.kmeans_init and bool(q.initted)


def test_kmeans_init_keeps_the_codebook_of_model_ckpt_path():
    cfg = load_config("quickstart")
    state = build_model(cfg.model, "torch").state_dict()
    state["quantize.embedding.weight"] = torch.randn_like(state["quantize.embedding.weight"])
    state["quantize.initted"] = torch.tensor(False)  # as if saved before its first step
    q = build_model(cfg.model, "torch", init_state=state).quantize.train()
    q(torch.randn(2, cfg.model.embed_dim, 4, 4))  # the first training forward: no k-means over the checkpoint
    torch.testing.assert_close(q.embedding.weight.detach(), state["quantize.embedding.weight"])
    fresh = build_model(cfg.model, "torch").quantize.train()
    before = fresh.embedding.weight.detach().clone()
    fresh(torch.randn(2, cfg.model.embed_dim, 4, 4))
    assert not torch.equal(fresh.embedding.weight.detach(), before)  # without a checkpoint k-means runs
