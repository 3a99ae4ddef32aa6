"""The contract: every shipped config runs `python -m vqfast.train --config NAME --set train.max_steps=2` on CPU,
as shipped (cpu_overrides apply), making its own data, and leaves the run directory the design card names."""
import json

import pytest
import yaml

from vqfast.train.__main__ import main
from vqfast.train.loading import shipped_configs

NAMES = sorted(p.name for p in shipped_configs())


def test_every_family_ships_a_config():
    for family in ["vqgan", "emavq", "vqvae", "vqvae2", "quantart_stage1", "quantart_stage2", "dinovq",
                   "stargan_v2_latent", "quickstart", "param.json"]:
        assert any(family in n for n in NAMES), f"no shipped config for {family}: {NAMES}"


@pytest.mark.parametrize("name", NAMES)
def test_shipped_config_runs_two_steps_as_shipped(tmp_path, name, capsys):
    run_dir = tmp_path / "run"
    rc = main(["--config", name, "--set", "train.max_steps=2", "--set", f"run_dir={run_dir}"])
    assert rc == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["step"] == 2
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / "metrics.jsonl").read_text().strip()
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["data"]["root"], "the resolved config must record the generated data.root"


@pytest.mark.parametrize("name,key,value", [
    ("quickstart", "train.lr", "-1e-4"), ("quickstart", "model.n_embed", "0"), ("quickstart", "data.clip_len", "0"),
    ("vqvae2_256", "model.nb_entries", "0"), ("dinovq", "model.codebook_size", "0"),
    ("stargan_v2_latent", "train.batch_size", "0"), ("quantart_stage2", "model.n_embed", "-3"),
])
def test_out_of_range_values_fail_before_training_naming_the_key(tmp_path, name, key, value):
    from vqfast.train import ConfigError, load_config

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(name, [f"{key}={value}", f"run_dir={tmp_path / 'never'}"])
    assert not (tmp_path / "never").exists()
