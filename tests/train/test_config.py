"""Config loading: defaults < file < --set, one error message listing every problem, derived values, each family
reading only its own keys, registry names, param.json translation, the LR rule."""
import json

import pytest

from vqfast.errors import ConfigError
from vqfast.train import load_config
from vqfast.train.__main__ import parse_args
from vqfast.train.families import resolve
from vqfast.train.families.vq.config import VQConfig

DATA = "data.synthetic=true"


def _write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_file_set_precedence(tmp_path):
    p = _write(tmp_path, "train: {max_steps: 10, batch_size: 3}\nmodel: {type: vqgan, n_embed: 64}\n"
                         "data: {synthetic: true}\n")
    cfg = load_config(p, ["train.max_steps=2", "model.ddconfig.ch=64", "loss.disc_weight=1e-1"])
    assert isinstance(cfg, VQConfig)
    assert cfg.train.max_steps == 2 and cfg.train.batch_size == 3 and cfg.train.log_every == 50
    assert cfg.model.n_embed == 64 and cfg.model.ddconfig.ch == 64 and cfg.loss.disc_weight == 0.1
    assert cfg.run_dir == "runs/default" and cfg.seed == 0 and cfg.backend == "auto" and cfg.data.root is None


def test_set_takes_several_pairs_per_flag_and_repeats():
    args = parse_args(["--config", "quickstart", "--set", "a=1", "b=2", "--set", "c=3"])
    assert args.overrides == ["a=1", "b=2", "c=3"]
    cfg = load_config("quickstart", ["train.max_steps=7", "train.log_every=3"])
    assert (cfg.train.max_steps, cfg.train.log_every) == (7, 3)


def test_every_problem_in_one_message_naming_key_and_file(tmp_path):
    p = _write(tmp_path, "train: {max_stepz: 10, lr: -1}\nmodel: {type: vqgan, ddconfig: {chh: 3}}\nfoo: 1\n"
                         "data: {synthetic: true, std: [0.5, 0.5]}\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert str(p) in msg
    assert "'train.max_stepz' — did you mean 'train.max_steps'" in msg
    assert "'model.ddconfig.chh'" in msg and "unknown key 'foo'" in msg
    assert "train.lr=-1.0: must be > 0" in msg
    assert "data.mean has 3 entries but data.std has 2" in msg  # a sibling section's cross-field rule still runs
    with pytest.raises(ConfigError, match="train.bogus"):
        load_config(_write(tmp_path, "data: {synthetic: true}", "ok.yaml"), ["train.bogus=1"])


def test_type_choice_and_bound_errors(tmp_path):
    p = _write(tmp_path, "train: {max_steps: lots, precision: fp8}\nbackend: cuda\ndata: {synthetic: true}\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert "train.max_steps='lots': expected int" in msg and "'fp8'" in msg and "'triton'" in msg
    for key, value, rule in [("train.batch_size", "0", ">= 1"), ("model.n_embed", "0", ">= 1"),
                             ("train.betas", "[0.5, 1.5]", "< 1"), ("data.clip_len", "0", ">= 1"),
                             ("model.ddconfig.dropout", "1.0", "< 1")]:
        with pytest.raises(ConfigError, match=f"{key.replace('.', '[.]')}=.*must be {rule}"):
            load_config("quickstart", [f"{key}={value}"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(p, ["train.max_steps"])


def test_no_data_is_an_error_unless_synthetic_is_asked(tmp_path):
    with pytest.raises(ConfigError, match="data.root is unset: set data.root"):
        load_config(_write(tmp_path, "model: {type: vqgan}\n"))
    with pytest.raises(ConfigError, match="data.root is unset"):
        load_config("stargan_v2_latent", ["data.synthetic=false"])
    with pytest.raises(ConfigError, match="model.style_root is unset"):
        load_config("quantart_stage2", ["data.synthetic=false", f"data.root={tmp_path}"])
    assert load_config("quickstart").data.synthetic is True


def test_equal_values_are_derived_not_repeated():
    cfg = load_config("quickstart", ["data.size=48"])
    assert cfg.model.ddconfig.resolution == 48 and cfg.loss.disc_in_channels == cfg.model.ddconfig.out_ch == 3
    cfg = load_config("quickstart", ["data.size=48", "model.ddconfig.out_ch=1"])
    assert cfg.loss.disc_in_channels == 1
    with pytest.raises(ConfigError, match=r"model.ddconfig.resolution=32 differs from data.size=48"):
        load_config("quickstart", ["data.size=48", "model.ddconfig.resolution=32"])
    with pytest.raises(ConfigError, match=r"loss.disc_in_channels=4 must equal the model's output channels \(3\)"):
        load_config("quickstart", ["loss.disc_in_channels=4"])
    dvq = load_config("dinovq", ["data.size=32", "model.patch_size=8"])
    assert dvq.model.img_size == 32 and dvq.model.perceptual_backbone == "random"  # cpu_overrides: random
    with pytest.raises(ConfigError, match="model.img_size=64 differs from data.size=32"):
        load_config("dinovq", ["data.size=32", "model.img_size=64", "model.patch_size=8"])
    s2 = load_config("quantart_stage2", ["model.embed_dim=24"])
    assert s2.model.lossconfig.disc_in_channels == 24
    vqvae = load_config("vqvae_256", ["data.size=80"])
    assert vqvae.model.resolution == 80 and vqvae.train.use_gan is False


def test_resolved_config_reloads_to_the_same_values(tmp_path):
    from vqfast.train.config import to_yaml

    for name in ("quickstart", "dinovq", "quantart_stage2", "stargan_v2_latent", "param.json", "vqvae2_256"):
        cfg = load_config(name)
        again = load_config(_write(tmp_path, to_yaml(cfg), f"{name}.yaml"))
        assert to_yaml(again) == to_yaml(cfg), name


@pytest.mark.parametrize("name,key,value", [
    ("dinovq", "loss.disc_weight", "1"),                    # DinoVQ's loss weights are model.* keys
    ("dinovq", "train.use_gan", "true"),                    # model.use_gan switches its GAN
    ("dinovq", "train.scale_lr", "true"),
    ("quantart_stage2", "loss.kind", "vqlpips"),            # stage 2's loss is model.lossconfig
    ("quantart_stage2", "perceptual.backbone", "random"),
    ("quantart_stage2", "train.disc_every", "3"),           # stage 2 runs D every step, as QuantArt
    ("stargan_v2_latent", "train.grad_accum", "2"),
    ("stargan_v2_latent", "train.lr", "1e-4"),              # its LRs are training.lr_g / lr_d / lr_mapping
    ("vqvae_256", "loss.disc_start", "5"),                  # the mse loss has no GAN keys
    ("quickstart", "data.synthetic_images", "4"),           # kind: video
    ("dinovq", "data.clip_len", "4"),                       # kind: images
])
def test_keys_a_family_does_not_read_are_unknown(name, key, value):
    section = key.split(".")[0]
    with pytest.raises(ConfigError, match=rf"unknown key '({key}|{section})'|{key}: not read"):
        load_config(name, [f"{key}={value}"])


def test_unsupported_switches_are_refused_at_load_time():
    with pytest.raises(ConfigError, match="loss.disc_conditional=true"):
        load_config("quickstart", ["loss.disc_conditional=true"])
    with pytest.raises(ConfigError, match="train.use_gan=true needs loss.kind=vqlpips"):
        load_config("vqvae_256", ["train.use_gan=true"])
    with pytest.raises(ConfigError, match="double_z"):
        load_config("quickstart", ["model.ddconfig.double_z=true"])
    with pytest.raises(ConfigError, match="scaling_rates=.*power of two"):
        load_config("vqvae2_256", ["model.scaling_rates=[3, 2]"])


@pytest.mark.parametrize("name,canonical", [("TamingVQGAN", "vqgan"), ("taming_vqgan", "vqgan"), ("VQGAN", "vqgan"),
                                            ("EMAVQ", "emavq"), ("emavq", "emavq"), ("VQVAE2", "vqvae2"),
                                            ("vqvae2", "vqvae2"), ("VqVae", "vqvae"), ("vq_vae", "vqvae"),
                                            ("QuantArt_Stage1", "quantart_stage1"), ("quantart-stage2", "quantart_stage2"),
                                            ("DinoVQ", "dinovq"), ("stargan_v2_latent", "stargan_v2_latent")])
def test_registry_names(name, canonical):
    assert resolve(name)[1] == canonical


def test_model_type_aliases_resolve_in_configs():
    assert load_config("quickstart", ["model.type=TamingVQGAN"]).model.type == "vqgan"
    assert load_config("quickstart", ["model.type=EMAVQ"]).model.type == "emavq"
    assert load_config("quantart_stage1", ["model.type=QuantArt-Stage1"]).model.type == "quantart_stage1"


def test_unknown_model_type_names_the_allowed_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"model.type='VqVae2x' is not registered; allowed .*dinovq.*vqgan"):
        load_config(_write(tmp_path, "model: {type: VqVae2x}"))


def test_param_json_translation(tmp_path):
    cfg = load_config("param.json", ["train.max_steps=3"])
    assert cfg.model.type == "emavq" and cfg.model.n_embed == 1024 and cfg.model.ddconfig.ch_mult == [1, 1, 2, 2, 4]
    assert cfg.loss.kind == "vqlpips" and cfg.loss.disc_start == 50000 and cfg.loss.disc_weight == 0.8
    assert cfg.train.lr == 1e-4 and cfg.train.scale_lr is False and cfg.train.max_steps == 3
    assert cfg.train.disc_every == 3 and cfg.train.scheduler == "exponential" and cfg.train.lr_decay == 0.99
    seed = {"model_type": "VQVAE2", "scaling_rates": [4, 2],
            "model_args": {"input_channels": 3, "vocab_size": 256, "n_init": 32, "n_hid": 64},
            "train_args": {"lr": 2e-4, "num_steps": 10}, "data_args": {"batch_size": 2, "sequence_length": 4},
            "data": {"synthetic": True}, "use_wandb": False}
    p = tmp_path / "param.json"
    p.write_text(json.dumps(seed))
    cfg = load_config(p)
    assert cfg.model.type == "vqvae2" and cfg.model.nb_entries == 256 and cfg.model.embed_dim == 32
    # use_gan absent = the pipeline's default (true): its LossCalculator GAN loss; false: mse + 1.0·vq
    assert cfg.model.hidden_channels == 64 and cfg.loss.kind == "losscalculator" and cfg.train.use_gan is True
    assert cfg.train.lr == 2e-4 and cfg.train.batch_size == 2 and cfg.data.clip_len == 4
    seed["train_args"]["use_gan"] = False
    p.write_text(json.dumps(seed))
    cfg = load_config(p)
    assert cfg.loss.kind == "mse" and cfg.loss.vq_weight == 1.0 and cfg.train.use_gan is False
    assert load_config(p, ["train.max_steps=5"]).train.max_steps == 5  # --set works on a translated param.json
    del seed["data"]
    p.write_text(json.dumps(seed))
    with pytest.raises(ConfigError, match="data.root is unset"):  # never trains on generated data by itself
        load_config(p)
    seed["train_args"]["wat"] = 1
    p.write_text(json.dumps(seed))
    with pytest.raises(ConfigError, match=r"unknown key train_args\.'wat'"):
        load_config(p)
    p.write_text(json.dumps({"model_args": {}}))
    with pytest.raises(ConfigError, match="missing 'model_type'"):
        load_config(p)
    p.write_text(json.dumps({"model_type": "dinovq"}))
    with pytest.raises(ConfigError, match="param.json describes the seed-002 VQ pipeline"):
        load_config(p)


def test_param_json_lossconfig_target_table(tmp_path):
    seed = {"model_type": "TamingVQGAN", "model_args": {"lossconfig": {"target": "my.Loss", "params": {}}}}
    p = tmp_path / "param.json"
    p.write_text(json.dumps(seed))
    with pytest.raises(ConfigError, match="lossconfig.target='my.Loss'"):
        load_config(p)


def test_lr_rule_is_taming_rule_on_the_optimizer_step_batch():
    """taming main.py: lr = accumulate_grad_batches · n_gpu · per-GPU batch · base_lr = images per optimizer step
    · base_lr. train.batch_size already is the batch per optimizer step: grad_accum must not scale it again."""
    base = ["train.base_learning_rate=1e-6", "train.batch_size=4", "data.clip_len=2"]
    one = load_config("quickstart", base)
    two = load_config("quickstart", [*base, "train.grad_accum=2"])
    one.train.lr = two.train.lr = None
    assert one.train.generator_lr(one.frames_per_step()) == pytest.approx(8e-6)
    assert two.train.generator_lr(two.frames_per_step()) == pytest.approx(8e-6)
    one.train.scale_lr = False
    assert one.train.generator_lr(one.frames_per_step()) == pytest.approx(1e-6)
    assert load_config("quickstart").train.generator_lr(1) == 1e-3  # train.lr wins
