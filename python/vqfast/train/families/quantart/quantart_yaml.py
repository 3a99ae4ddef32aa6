"""QuantArt's own YAML configs as they are written (siyuhuang/QuantArt ``configs/*.yaml``, codebyrpp/QuantArt
``configs/stage_1/*.yaml``, ``configs/stage_2/*.yaml``, ``logs/*/configs/test.yaml``) → a QuantArt-family dict.

Stage 1: ``quantart.models.stage_1.BaseVQGAN``, or ``taming.models.vqgan.VQModel`` carrying QuantArt's stage-1
keys (``use_quantize``, ``freeze_decoder``, ``ckpt_quantize``) → ``quantart_stage1`` with ``loss:`` from the
``VQLPIPSWithDiscriminator`` / ``Stage1Loss`` params (a plain taming VQModel file is the VQ family's and trains
the same network). Stage 2: ``taming.models.vqgan_ref.VQModel_Ref`` / ``quantart.models.stage_2.StyleTransfer``
(quantised) and ``taming.models.vqgan_ref_continuous.VQModel_Ref`` / ``quantart.models.stage_2_continuous.
StyleTransferContinuous`` (``model.variant: continuous``) → ``quantart_stage2`` with ``model.lossconfig`` from
the ``VQLPIPS_Ref`` / ``Stage2Loss`` params. Data: ``unpaired_image.UnpairedImageTrain/Val`` ``folder1``
(content) / ``folder2`` (style) → ``data.root`` / ``model.style_root`` and ``data.val_root`` /
``model.val_style_root``; ``custom.CustomTrain/CustomTest`` image lists → ``data.train_list`` / ``data.val_list``.
The LR, batch and ``lightning.trainer`` keys follow taming's ``main.py`` (``config/lightning.py``).
"""
from __future__ import annotations

from typing import Any, Optional

from vqfast.train.config import lightning
from vqfast.train.families.vq.taming_yaml import (
    QUANTART_STAGE1_KEYS,
    custom_dataset,
    translate_model_params,
    translate_vqlpips_loss,
)

STAGE1_TARGETS = {"quantart.models.stage_1.BaseVQGAN", "taming.models.vqgan.VQModel"}
STAGE2_TARGETS = {"taming.models.vqgan_ref.VQModel_Ref": "quantized",
                  "quantart.models.stage_2.StyleTransfer": "quantized",
                  "taming.models.vqgan_ref_continuous.VQModel_Ref": "continuous",
                  "quantart.models.stage_2_continuous.StyleTransferContinuous": "continuous"}
STAGE1_LOSS_TARGETS = {"quantart.losses.stage_1.Stage1Loss"}
STAGE2_LOSS_TARGETS = {"taming.modules.losses.vqperceptual_ref.VQLPIPS_Ref", "quantart.losses.stage_2.Stage2Loss"}
STAGE2_LOSS_KEYS = {"disc_start", "codebook1_weight", "codebook2_weight", "G_step", "disc_num_layers",
                    "disc_in_channels", "disc_factor", "disc_weight", "reverse_weight", "style_weight",
                    "use_actnorm", "disc_conditional", "disc_ndf", "disc_loss"}
"""QuantArt VQLPIPS_Ref's constructor arguments (taming/modules/losses/vqperceptual_ref.py)."""


def translate_if_quantart_yaml(raw: dict, where: str) -> Optional[dict]:
    """The registry's hook: a QuantArt-family dict for a QuantArt stage-1/stage-2 config, else None."""
    if not lightning.is_lightning_layout(raw):
        return None
    target = raw["model"]["target"]
    params = raw["model"].get("params") or {}
    if target in STAGE2_TARGETS:
        return _translate(raw, where, stage=2)
    if target == "quantart.models.stage_1.BaseVQGAN" or (
            target in STAGE1_TARGETS and any(k in params for k in QUANTART_STAGE1_KEYS)):
        return _translate(raw, where, stage=1)
    return None


def _stage1_model(lc: lightning.LightningConfig, out: dict) -> None:
    model = out["model"]
    model["type"] = "quantart_stage1"
    translate_model_params(lc, model)
    for key in QUANTART_STAGE1_KEYS:
        if key in lc.params:
            model[key] = lc.take(key)
    if lc.loss_target in STAGE1_LOSS_TARGETS:  # codebyrpp's refactor: the same taming loss under a new name
        lc.loss_target = "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"
    translate_vqlpips_loss(lc, out)


def _stage2_model(lc: lightning.LightningConfig, out: dict) -> None:
    model = out["model"]
    model.update(type="quantart_stage2", variant=STAGE2_TARGETS[lc.target])
    for key in ("n_embed", "embed_dim", "ddconfig", "checkpoint_encoder", "checkpoint_decoder", "use_residual",
                "use_conv", "use_selfatt", "ckpt_path", "ignore_keys", "block_num"):
        if key in lc.params:
            model[key] = lc.take(key)
    for key in ("image_key1", "image_key2", "sane_index_shape"):
        lc.params.pop(key, None)  # batch keys / returned index shape: nothing to configure in vqfast
    if "monitor" in lc.params:
        lc.ignore(f"model.params.monitor={lc.take('monitor')!r}",
                  "vqfast keeps last.pt and periodic checkpoints, not a best-by-metric one")
    if lc.params.get("remap") is not None:
        lc.errors.append("model.params.remap: QuantArt stage 2 with a remapped codebook is not supported")
    lc.params.pop("remap", None)
    if lc.loss_target is not None and lc.loss_target not in STAGE2_LOSS_TARGETS:
        lc.errors.append(f"model.params.lossconfig.target={lc.loss_target!r}: QuantArt stage 2 trains "
                         f"{' or '.join(sorted(STAGE2_LOSS_TARGETS))}")
    unknown = sorted(set(lc.loss_params) - STAGE2_LOSS_KEYS)
    if unknown:
        lc.errors.append(f"model.params.lossconfig.params: unknown key(s) {', '.join(unknown)} for VQLPIPS_Ref")
    loss = {k: v for k, v in lc.loss_params.items() if k in STAGE2_LOSS_KEYS}
    if loss.pop("disc_conditional", False):
        lc.errors.append("model.params.lossconfig.params.disc_conditional: QuantArt's latent D is unconditional")
    model["lossconfig"] = loss


def _unpaired(split_name: str, params: dict, out: dict, errors: list[str]) -> None:
    """QuantArt taming/data/unpaired_image.py: folder1 = content, folder2 = style, short side → size + centre
    crop (taming/data/base.py UnpairedImagePaths)."""
    if split_name == "test":
        return  # QuantArt's test split is for main.py -t False runs, not training
    data, model = out.setdefault("data", {}), out["model"]
    data["kind"] = "images"
    content, style = params.pop("folder1", None), params.pop("folder2", None)
    if content is None or style is None:
        errors.append(f"data.params.{split_name}.params: folder1 (content) and folder2 (style) are both needed")
    if split_name == "train":
        data["root"], model["style_root"] = content, style
    else:
        data["val_root"], model["val_style_root"] = content, style
    lightning.take_size(split_name, params, data, errors)
    for key in sorted(k for k, v in params.items() if v is not None):
        errors.append(f"data.params.{split_name}.params.{key}: not read by vqfast (give image folders as "
                      "folder1/folder2)")


def _translate(raw: dict, where: str, *, stage: int) -> dict[str, Any]:
    lc = lightning.split(raw, where)
    out: dict[str, Any] = {"model": {}, "train": {}, "data": {}}
    (_stage1_model if stage == 1 else _stage2_model)(lc, out)
    if lc.base_learning_rate is not None:
        out["train"]["base_learning_rate"] = lc.base_learning_rate
        out["train"]["scale_lr"] = True
    factor = lightning.translate_trainer(lc, out)

    def custom(split_name: str, params: dict, into: dict) -> None:
        if stage == 2:
            lc.errors.append(f"data.params.{split_name}: stage 2 reads unpaired content/style folders "
                             "(unpaired_image.UnpairedImageTrain)")
            return
        custom_dataset(split_name, params, into, lc.errors)

    def unpaired(split_name: str, params: dict, into: dict) -> None:
        if stage == 1:
            lc.errors.append(f"data.params.{split_name}: stage 1 reads one image set (custom.CustomTrain)")
            return
        _unpaired(split_name, params, into, lc.errors)

    lightning.translate_data(lc, out, {"custom.CustomTrain": custom, "custom.CustomTest": custom,
                                       "unpaired_image.UnpairedImageTrain": unpaired,
                                       "unpaired_image.UnpairedImageVal": unpaired,
                                       "unpaired_image.UnpairedImageTest": unpaired}, factor)
    return lightning.finish(lc, out)
