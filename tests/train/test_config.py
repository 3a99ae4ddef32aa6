"""Config loading: defaults < file < --set, unknown keys, param.json translation, registry names."""
import json

import pytest

from vqfast.train import ConfigError, load_config
from vqfast.train.loading import shipped_configs
from vqfast.train.registry import resolve_family

CONTRACT_KEYS = ["run_dir", "seed", "backend", "data.root", "train.max_steps", "train.batch_size", "train.log_every",
                 "train.ckpt_every", "train.sample_every"]


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_file_set_precedence(tmp_path):
    p = _write(tmp_path, "train: {max_steps: 10, batch_size: 3}\nmodel: {type: vqgan, n_embed: 64}\n")
    cfg = load_config(p, ["train.max_steps=2", "model.ddconfig.ch=64", "loss.disc_weight=1e-1"])
    assert cfg.train.max_steps == 2 and cfg.train.batch_size == 3 and cfg.train.log_every == 50
    assert cfg.model.n_embed == 64 and cfg.model.ddconfig.ch == 64 and cfg.loss.disc_weight == 0.1
    for key in CONTRACT_KEYS:
        _get(cfg, key)


def test_unknown_keys_named_with_file(tmp_path):
    p = _write(tmp_path, "train: {max_stepz: 10}\nmodel: {type: vqgan, ddconfig: {chh: 3}}\nfoo: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert "train.max_stepz" in msg and "max_steps" in msg and str(p) in msg
    assert "model.ddconfig.chh" in msg and "'foo'" in msg
    with pytest.raises(ConfigError, match="train.bogus"):
        load_config(_write(tmp_path, "{}", "ok.yaml"), ["train.bogus=1"])


def test_type_and_choice_errors(tmp_path):
    p = _write(tmp_path, "train: {max_steps: lots, precision: fp8}\nbackend: cuda\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert "train.max_steps='lots'" in msg and "'fp8'" in msg and "'triton'" in msg
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(_write(tmp_path, "train: {batch_size: 0}", "b.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(p, ["train.max_steps"])


@pytest.mark.parametrize("name,canonical", [("TamingVQGAN", "vqgan"), ("taming_vqgan", "vqgan"), ("VQGAN", "vqgan"),
                                            ("EMAVQ", "emavq"), ("emavq", "emavq"), ("VQVAE2", "vqvae2"),
                                            ("vqvae2", "vqvae2"), ("VqVae", "vqvae"), ("vq_vae", "vqvae")])
def test_registry_names(name, canonical):
    assert resolve_family(name).canonical == canonical


@pytest.mark.parametrize("name", ["quantart_stage1", "quantart_stage2", "dinovq", "stargan_v2_latent"])
def test_later_families_are_registered_and_load(name):
    assert resolve_family(name).canonical == name
    cfg = load_config(name, ["train.max_steps=2"])
    assert cfg.model.type == name and cfg.train.max_steps == 2


def test_unknown_model_type(tmp_path):
    with pytest.raises(ConfigError, match="VqVae2.*not registered|not registered"):
        load_config(_write(tmp_path, "model: {type: VqVae2x}"))


def test_param_json_translation(tmp_path):
    cfg = load_config("param.json", ["train.max_steps=3"])
    assert cfg.model.type == "emavq" and cfg.model.n_embed == 1024 and cfg.model.ddconfig.ch_mult == [1, 1, 2, 2, 4]
    assert cfg.loss.kind == "vqlpips" and cfg.loss.disc_start == 50000 and cfg.loss.disc_weight == 0.8
    assert cfg.train.lr == 1e-4 and cfg.train.scale_lr is False and cfg.train.max_steps == 3
    assert cfg.train.disc_every == 3 and cfg.train.scheduler == "exponential" and cfg.data.clip_len in (1, 8)
    seed = {"model_type": "VQVAE2", "scaling_rates": [4, 2],
            "model_args": {"input_channels": 3, "vocab_size": 256, "n_init": 32, "n_hid": 64},
            "train_args": {"lr": 2e-4, "num_steps": 10}, "data_args": {"batch_size": 2, "sequence_length": 4},
            "use_wandb": False}
    p = tmp_path / "param.json"
    p.write_text(json.dumps(seed))
    cfg = load_config(p)
    assert cfg.model.type == "vqvae2" and cfg.model.nb_entries == 256 and cfg.model.embed_dim == 32
    assert cfg.model.hidden_channels == 64 and cfg.loss.kind == "mse" and cfg.loss.vq_weight == 1.0
    assert cfg.train.lr == 2e-4 and cfg.train.batch_size == 2 and cfg.data.clip_len == 4
    seed["train_args"]["wat"] = 1
    p.write_text(json.dumps(seed))
    with pytest.raises(ConfigError, match="train_args.'wat'|'wat'"):
        load_config(p)
    p.write_text(json.dumps({"model_args": {}}))
    with pytest.raises(ConfigError, match="model_type"):
        load_config(p)


def test_param_json_lossconfig_target_table(tmp_path):
    seed = {"model_type": "TamingVQGAN", "model_args": {"lossconfig": {"target": "my.Loss", "params": {}}}}
    p = tmp_path / "param.json"
    p.write_text(json.dumps(seed))
    with pytest.raises(ConfigError, match="lossconfig.target='my.Loss'"):
        load_config(p)


def test_shipped_configs_present():
    names = [p.name for p in shipped_configs()]
    assert "quickstart.yaml" in names and "param.json" in names
    for family in ("vqgan", "emavq", "vqvae", "vqvae2"):
        assert any(family in n for n in names), family
