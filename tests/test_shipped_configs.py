"""The contract: every shipped config runs `python -m vqfast.train --config NAME --set train.max_steps=2` on CPU,
as shipped (cpu_overrides apply), making its own data, and leaves the run directory the design card names; the
shipped configs and the registered families map onto each other exactly."""
import json

import pytest
import yaml

from vqfast.errors import ConfigError
from vqfast.train import load_config
from vqfast.train.__main__ import main
from vqfast.train.config import shipped_configs
from vqfast.train.families import FAMILIES, family_of

NAMES = sorted(p.name for p in shipped_configs())
MODEL_TYPES = {"vqgan", "emavq", "vqvae", "vqvae2", "quantart_stage1", "quantart_stage2", "dinovq",
               "stargan_v2_latent"}


def test_every_family_and_model_type_ships_a_config_named_after_it():
    configs = {name: load_config(name) for name in NAMES}
    assert {family_of(cfg).name for cfg in configs.values()} == {f.name for f in FAMILIES}
    assert {cfg.model.type for cfg in configs.values()} == MODEL_TYPES
    for name, cfg in configs.items():  # the file name contains the model type it trains
        assert name == "quickstart.yaml" or name == "param.json" or cfg.model.type in name.replace("-", "_"), name
    assert configs["quickstart.yaml"].model.type == "vqgan" and configs["param.json"].model.type == "emavq"
    for mtype in MODEL_TYPES:  # exact: vqvae_256 counts for vqvae only, not as a substring of vqvae2
        assert any(cfg.model.type == mtype and mtype in name for name, cfg in configs.items()), mtype


@pytest.mark.parametrize("name", NAMES)
def test_shipped_config_runs_two_steps_as_shipped(tmp_path, name, capsys):
    run_dir = tmp_path / "run"
    rc = main(["--config", name, "--set", "train.max_steps=2", f"run_dir={run_dir}", "train.progress=false"])
    assert rc == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["step"] == 2 and out["run_dir"] == str(run_dir)
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / "metrics.jsonl").read_text().strip() and list((run_dir / "samples").glob("*.png"))
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["data"]["root"], "the resolved config must record the generated data.root"
    again = load_config(run_dir / "config.yaml", [f"run_dir={tmp_path / 'again'}"])  # it reloads as is
    assert again.data.root == resolved["data"]["root"]


@pytest.mark.parametrize("name,key,value", [
    ("quickstart", "train.lr", "-1e-4"), ("quickstart", "model.n_embed", "0"), ("quickstart", "data.clip_len", "0"),
    ("vqvae2_256", "model.nb_entries", "0"), ("dinovq", "model.codebook_size", "0"),
    ("dinovq", "model.encoder_depth", "0"), ("dinovq", "model.encoder_num_heads", "0"),
    ("stargan_v2_latent", "train.batch_size", "0"), ("stargan_v2_latent", "training.lr_mapping", "-1"),
    ("quantart_stage2", "model.n_embed", "-3"), ("param.json", "train.disc_every", "0"),
])
def test_out_of_range_values_fail_before_training_naming_the_key(tmp_path, name, key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + "=.*must be"):
        load_config(name, [f"{key}={value}", f"run_dir={tmp_path / 'never'}"])
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("name", NAMES)
def test_shipped_configs_ask_for_synthetic_data_and_no_data_is_an_error(name):
    """Synthetic data only when asked: every shipped file says data.synthetic: true; without it the config fails
    naming the key to set (data is never substituted)."""
    from vqfast.train.config.sources import SHIPPED_DIR, read_file
    assert read_file(SHIPPED_DIR / name)["data"]["synthetic"] is True
    with pytest.raises(ConfigError, match=r"is unset: set .*data\.synthetic: true"):
        load_config(name, ["data.synthetic=false"])
