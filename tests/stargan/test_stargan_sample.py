"""``python -m vqfast.stargan_sample``: reference- and latent-guided translation grids from a seed-003 checkpoint
or a vqfast run."""
import pytest
import torch
from original_project import CONFIG, OriginalNets, write_config, write_latents

from vqfast.stargan_sample import main as sample_main
from vqfast.train.__main__ import main as train_main

SCALE = 0.18215


@pytest.mark.parametrize("branch", ["baseline_AdaIN", "AdaGN_no_SN"])
def test_seed003_checkpoint_translations_equal_the_original_nets(tmp_path, branch):
    latents = write_latents(tmp_path / "lat", per_domain=2)
    torch.manual_seed(2)
    orig = OriginalNets(dict(CONFIG["model"], exp_branch=branch)).eval()
    torch.save(orig.checkpoint(epoch=3, global_step=9, compiled=True), tmp_path / "latest.pt")
    out = tmp_path / "out"
    assert sample_main(["--ckpt", str(tmp_path / "latest.pt"), "--out", str(out), "--data", str(tmp_path / "lat"),
                        "--ref-index", "1", "--num-styles", "2", "--device", "cpu"]) == 0
    got = torch.load(out / "translations.pt", weights_only=True)
    assert got["domains"] == ["photo", "monet"]
    assert got["reference"].shape == (2, 2, 4, 16, 16) and got["latent"].shape == (2, 2, 2, 4, 16, 16)
    content = torch.stack([latents["photo"][0], latents["monet"][0]]) * SCALE
    refs = torch.stack([latents["photo"][1], latents["monet"][1]]) * SCALE
    with torch.no_grad():
        for j in range(2):
            s = orig.style(refs[j:j + 1], torch.tensor([j])).expand(2, -1)
            want = orig.gen(content, s)
            for i in range(2):
                expect = content[i] if i == j else want[i]   # the original grid shows the content on its diagonal
                torch.testing.assert_close(got["reference"][i, j], expect, rtol=1e-4, atol=1e-5)
    for name in ("reference_guided.png", "latent_guided.png"):
        assert (out / name).stat().st_size > 0


def test_vqfast_run_dir_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_latents(tmp_path / "lat", per_domain=2)
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "lat", training__num_epochs=1)
    assert train_main(["--config", str(cfg)]) == 0
    out = tmp_path / "out"
    assert sample_main(["--ckpt", "outputs/tiny_orig", "--out", str(out), "--device", "cpu"]) == 0
    got = torch.load(out / "translations.pt", weights_only=True)
    assert got["latent"].shape == (2, 2, 3, 4, 16, 16) and torch.isfinite(got["latent"]).all()
    assert sample_main(["--ckpt", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
