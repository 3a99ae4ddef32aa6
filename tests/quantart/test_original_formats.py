"""Coming from QuantArt: its stage-2 YAML (siyuhuang and codebyrpp layouts), its Lightning checkpoints (stage 1
as checkpoint_encoder/decoder, a whole stage 2 as model.ckpt_path and for stylize) run through vqfast as they
are written; the α/β fidelity fusion; training the output codebook."""
import copy

import pytest
import torch
import yaml
from PIL import Image

from vqfast.data.synthetic import make_images
from vqfast.data.unpaired import make_paintings
from vqfast.errors import ConfigError
from vqfast.losses.quantart import Stage2Loss
from vqfast.models.quantart import StyleTransfer
from vqfast.models.vqgan import VQModel
from vqfast.stylize import fidelity_latent, fused_decoder, load_stage2
from vqfast.stylize import main as stylize_main
from vqfast.train import load_config
from vqfast.train import trainer as Trainer
from vqfast.train.__main__ import main

DD = {"double_z": False, "z_channels": 16, "resolution": 16, "in_channels": 3, "out_ch": 3, "ch": 16,
      "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
N_EMBED, EMBED_DIM = 32, 8


def _stage1_ckpt(path, seed):
    """A QuantArt/taming stage-1 Lightning checkpoint: VQModel keys + its loss child."""
    torch.manual_seed(seed)
    sd = VQModel(DD, N_EMBED, EMBED_DIM).state_dict()
    sd["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4)
    torch.save({"epoch": 1, "global_step": 10, "state_dict": sd}, path)
    return sd


def _stage2_yaml(tmp_path, *, target="taming.models.vqgan_ref.VQModel_Ref", **params):
    content = make_images(tmp_path / "coco", num_images=6, size=16, seed=1)
    style = make_paintings(tmp_path / "wikiart", num_images=6, size=16, seed=2)
    enc = tmp_path / "vqgan_imagenet.ckpt"
    dec = tmp_path / "vqgan_wikiart.ckpt"
    _stage1_ckpt(enc, 1)
    _stage1_ckpt(dec, 2)
    cfg = {"model": {"base_learning_rate": 4.5e-6, "target": target, "params": {
        "checkpoint_decoder": str(dec), "checkpoint_encoder": str(enc), "embed_dim": EMBED_DIM, "n_embed": N_EMBED,
        "use_residual": True, "ddconfig": DD, **params,
        "lossconfig": {"target": "taming.modules.losses.vqperceptual_ref.VQLPIPS_Ref", "params": {
            "disc_ndf": 16, "disc_num_layers": 0, "disc_conditional": False, "disc_in_channels": EMBED_DIM,
            "disc_start": 0, "disc_weight": 1.0, "disc_factor": 0.8, "codebook1_weight": 1.0,
            "codebook2_weight": 1.0, "reverse_weight": 1.0, "style_weight": 10.0, "G_step": 1}}}},
        "data": {"target": "main.DataModuleFromConfig", "params": {"batch_size": 2, "num_workers": 8, "train": {
            "target": "taming.data.unpaired_image.UnpairedImageTrain",
            "params": {"folder2": str(style), "folder1": str(content), "size": 16}},
            "validation": {"target": "taming.data.unpaired_image.UnpairedImageVal",
                           "params": {"folder2": str(style), "folder1": str(content), "size": 16}},
            "test": {"target": "taming.data.unpaired_image.UnpairedImageTest",
                     "params": {"folder2": str(style), "folder1": str(content), "size": 16}}}}}
    path = tmp_path / "coco2art.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, content, style, enc, dec


def _run(path, run, *sets):
    return main(["--config", str(path), "--set", f"run_dir={run}", "train.max_steps=2", "train.progress=false",
                 "model.block_num=1", *sets])


def test_quantart_stage2_yaml_trains_on_its_folders_and_checkpoints(tmp_path):
    path, content, style, enc, dec = _stage2_yaml(tmp_path)
    cfg = load_config(path, ["model.block_num=1"])
    assert cfg.model.type == "quantart_stage2" and cfg.model.variant == "quantized"
    assert cfg.data.root == str(content) and cfg.model.style_root == str(style)
    assert cfg.model.val_style_root == str(style) and cfg.data.val_root == str(content)
    assert cfg.train.batch_size == 2 and cfg.train.base_learning_rate == 4.5e-6 and cfg.model.lossconfig.disc_ndf == 16
    run = tmp_path / "run"
    assert _run(path, run) == 0
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["data"]["root"] == str(content) and resolved["model"]["style_root"] == str(style)
    model = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["modules"]["model"]
    enc_sd, dec_sd = torch.load(enc, weights_only=True)["state_dict"], torch.load(dec, weights_only=True)["state_dict"]
    torch.testing.assert_close(model["encoder.conv_in.weight"], enc_sd["encoder.conv_in.weight"])
    torch.testing.assert_close(model["quantize_enc.embedding.weight"], enc_sd["quantize.embedding.weight"])
    torch.testing.assert_close(model["decoder.conv_out.weight"], dec_sd["decoder.conv_out.weight"])
    torch.testing.assert_close(model["quantize_dec.embedding.weight"], dec_sd["quantize.embedding.weight"])


def test_codebyrpp_layout_and_continuous_target(tmp_path):
    path, *_ = _stage2_yaml(tmp_path, target="quantart.models.stage_2_continuous.StyleTransferContinuous")
    raw = yaml.safe_load(path.read_text())
    raw["model"]["params"]["lossconfig"]["target"] = "quantart.losses.stage_2.Stage2Loss"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert cfg.model.type == "quantart_stage2" and cfg.model.variant == "continuous"


def test_unknown_and_unhonoured_keys(tmp_path, caplog):
    path, *_ = _stage2_yaml(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["lightning"] = {"trainer": {"benchmark": True, "accumulate_grad_batches": 2, "gpus": "0,1"},
                        "callbacks": {"image_logger": {}}}
    path.write_text(yaml.safe_dump(raw))
    with caplog.at_level("WARNING", logger="vqfast"):
        cfg = load_config(path)
    assert cfg.train.batch_size == 2 * 2 * 2 and cfg.train.grad_accum == 2  # per-GPU batch × GPUs × accumulation
    assert "lightning.trainer.benchmark" in caplog.text and "lightning.callbacks" in caplog.text
    raw["lightning"] = {"trainer": {"bogus_key": 1}}
    raw["model"]["params"]["lossconfig"]["params"]["mystery_weight"] = 2.0
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="bogus_key") as info:
        load_config(path)
    assert "mystery_weight" in str(info.value)  # every problem in one message
    raw = yaml.safe_load(path.read_text())
    raw["model"]["target"] = "taming.models.cond_transformer.Net2NetTransformer"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="Net2NetTransformer"):
        load_config(path)


def _stage2_lightning_ckpt(path, *, variant="quantized", seed=5):
    """A whole QuantArt stage-2 Lightning checkpoint: VQModel_Ref parts + loss.discriminator.*."""
    torch.manual_seed(seed)
    model = StyleTransfer(DD, N_EMBED, EMBED_DIM, block_num=1, variant=variant)
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    loss = Stage2Loss(0, disc_num_layers=0, disc_in_channels=EMBED_DIM, disc_ndf=16)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd.update({f"loss.{k}": v.clone() for k, v in loss.state_dict().items() if k.startswith("discriminator.")})
    torch.save({"epoch": 0, "global_step": 100, "state_dict": sd}, path)
    return sd


def test_stage2_ckpt_path_loads_every_part_and_the_latent_discriminator(tmp_path):
    path, *_ = _stage2_yaml(tmp_path)
    whole = tmp_path / "last.ckpt"
    sd = _stage2_lightning_ckpt(whole)
    cfg = load_config(path, ["model.block_num=1", f"model.ckpt_path={whole}", f"run_dir={tmp_path / 'r'}"])
    task = Trainer(cfg).task
    for k, v in task.model.state_dict().items():
        if k in sd:
            torch.testing.assert_close(v, sd[k], rtol=0, atol=0, msg=k)
    for k, v in task.discriminator.state_dict().items():
        torch.testing.assert_close(v, sd[f"loss.discriminator.{k}"], rtol=0, atol=0, msg=k)


def test_stylize_a_quantart_checkpoint_with_fidelity_fusion(tmp_path):
    path, content, style, *_ = _stage2_yaml(tmp_path)
    d_ckpt, c_ckpt = tmp_path / "discrete.ckpt", tmp_path / "continuous.ckpt"
    _stage2_lightning_ckpt(d_ckpt)
    _stage2_lightning_ckpt(c_ckpt, variant="continuous", seed=6)
    c_yaml = tmp_path / "continuous.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["model"]["target"] = "taming.models.vqgan_ref_continuous.VQModel_Ref"
    for p in (path, c_yaml):
        r = copy.deepcopy(raw) if p == c_yaml else yaml.safe_load(p.read_text())
        r["model"]["params"]["block_num"] = 1
        p.write_text(yaml.safe_dump(r))
    out = tmp_path / "out"
    style_img = sorted(style.iterdir())[0]
    assert stylize_main(["--ckpt", str(d_ckpt), "--config", str(path), "--content", str(content), "--style",
                         str(style_img), "--out", str(out), "--device", "cpu", "--alpha", "0.5", "--beta", "0.7",
                         "--ckpt-continuous", str(c_ckpt), "--config-continuous", str(c_yaml)]) == 0
    written = sorted(out.glob("*_stylised.png"))
    assert len(written) == 6
    with Image.open(written[0]) as im:
        assert im.size == (16, 16)
    # the fused latent and decoder follow the formula
    d_model, _ = load_stage2(d_ckpt, "cpu", str(path))
    c_model, _ = load_stage2(c_ckpt, "cpu", str(c_yaml))
    x, ref = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        qc, qy = d_model.transfer(x, ref)[:2]
        zc, zy = c_model.transfer(x, ref)[:2]
        want = 0.5 * (0.7 * qy + 0.3 * qc) + 0.5 * (0.7 * zy + 0.3 * zc)
    torch.testing.assert_close(fidelity_latent(d_model, c_model, x, ref, 0.5, 0.7), want)
    torch.testing.assert_close(fidelity_latent(d_model, None, x, ref, 1.0, 1.0), qy)  # plain QuantArt
    fused = fused_decoder(d_model, c_model, 0.25)
    w = "decoder.conv_out.weight"
    torch.testing.assert_close(fused.state_dict()[w], 0.25 * d_model.state_dict()[w] + 0.75 * c_model.state_dict()[w])
    assert fused_decoder(d_model, c_model, 1.0) is d_model and fused_decoder(d_model, c_model, 0.0) is c_model
    # α < 1 without a continuous model is refused with one line
    assert stylize_main(["--ckpt", str(d_ckpt), "--config", str(path), "--content", str(content), "--style",
                         str(style_img), "--out", str(out), "--alpha", "0.5"]) == 2


def test_train_quantizers_trains_the_output_codebook(tmp_path):
    path, *_ = _stage2_yaml(tmp_path)
    base = ["model.block_num=1", f"run_dir={tmp_path / 'r'}"]
    frozen = Trainer(load_config(path, base)).task
    assert not any(p is frozen.model.quantize_dec.embedding.weight for g in frozen.opt_ae.param_groups
                   for p in g["params"])
    run = tmp_path / "tq"
    assert _run(path, run, "model.train_quantizers=true", "model.lossconfig.disc_start=100") == 0
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["modules"]["model"]
    dec_sd = torch.load(tmp_path / "vqgan_wikiart.ckpt", weights_only=True)["state_dict"]
    assert not torch.equal(last["quantize_dec.embedding.weight"], dec_sd["quantize.embedding.weight"])
    torch.testing.assert_close(last["quantize_enc.embedding.weight"],  # the content codebook stays frozen
                               torch.load(tmp_path / "vqgan_imagenet.ckpt", weights_only=True)["state_dict"][
                                   "quantize.embedding.weight"])
