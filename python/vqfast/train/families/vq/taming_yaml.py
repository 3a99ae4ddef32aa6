"""taming-transformers' own YAML configs (``configs/custom_vqgan.yaml``, ``faceshq_vqgan.yaml``, ...) as they
are written → a VQ-family config dict.

- ``model.target``: ``taming.models.vqgan.VQModel`` → ``model.type: vqgan``, ``taming.models.vqgan.EMAVQ`` →
  ``emavq`` (a QuantArt stage-1 file — ``use_quantize``/``freeze_decoder``/``ckpt_quantize`` or QuantArt's own
  targets — is the QuantArt family's).
- ``model.params``: ``n_embed``, ``embed_dim``, ``ddconfig``, ``ckpt_path``, ``ignore_keys``, ``remap``;
  ``lossconfig`` (``VQLPIPSWithDiscriminator``) params → ``loss.*`` with the same names.
- ``model.base_learning_rate`` → ``train.base_learning_rate`` with taming's LR rule (``scale_lr``).
- ``data.params``: ``batch_size`` (per GPU, see ``config/lightning.py``), ``train``/``validation``
  ``taming.data.custom.CustomTrain``/``CustomTest`` → ``data.train_list``/``data.val_list`` (the image list
  files) and ``data.size``; ``lightning.trainer`` as in ``config/lightning.py``.
"""
from __future__ import annotations

from typing import Any, Optional

from vqfast.train.config import lightning
from vqfast.train.families.vq.param_json import LOSS_TARGETS

MODEL_TARGETS = {"taming.models.vqgan.VQModel": "vqgan", "taming.models.vqgan.EMAVQ": "emavq"}
QUANTART_STAGE1_KEYS = ("use_quantize", "freeze_decoder", "ckpt_quantize")
"""``model.params`` keys only QuantArt's stage-1 VQModel (``BaseVQGAN``) has."""
LOSS_KEYS = {"disc_start", "codebook_weight", "pixelloss_weight", "disc_num_layers", "disc_in_channels",
             "disc_factor", "disc_weight", "perceptual_weight", "use_actnorm", "disc_conditional", "disc_ndf",
             "disc_loss"}
"""taming VQLPIPSWithDiscriminator's constructor arguments (taming/modules/losses/vqperceptual.py)."""


def translate_if_taming_yaml(raw: dict, where: str) -> Optional[dict]:
    """The registry's hook: a VQ-family dict for a taming VQModel/EMAVQ config, else None."""
    if not lightning.is_lightning_layout(raw):
        return None
    params = raw["model"].get("params") or {}
    if raw["model"]["target"] not in MODEL_TARGETS or any(k in params for k in QUANTART_STAGE1_KEYS):
        return None
    return translate(raw, where)


def translate_model_params(lc: lightning.LightningConfig, model: dict) -> None:
    """The ``model.params`` a taming VQModel and QuantArt's stage-1 model share."""
    for key in ("n_embed", "embed_dim", "ddconfig", "ckpt_path", "ignore_keys", "remap"):
        if key in lc.params:
            model[key] = lc.take(key)
    image_key = lc.take("image_key", "image")
    if image_key != "image":
        lc.ignore(f"model.params.image_key={image_key!r}", "vqfast's loaders feed images directly")
    if "monitor" in lc.params:
        lc.ignore(f"model.params.monitor={lc.take('monitor')!r}",
                  "vqfast keeps last.pt and periodic checkpoints, not a best-by-metric one")
    if "sane_index_shape" in lc.params:
        lc.take("sane_index_shape")  # only the shape of returned indices; vqfast's training does not expose them
    if lc.params.get("colorize_nlabels") is not None:
        lc.errors.append("model.params.colorize_nlabels: segmentation-map models are not trained by vqfast")
    lc.params.pop("colorize_nlabels", None)


def translate_vqlpips_loss(lc: lightning.LightningConfig, out: dict) -> None:
    target = lc.loss_target or "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"
    if LOSS_TARGETS.get(target) != "vqlpips":
        lc.errors.append(f"model.params.lossconfig.target={target!r}: vqfast trains taming's "
                         "VQLPIPSWithDiscriminator (taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator)")
        return
    unknown = sorted(set(lc.loss_params) - LOSS_KEYS)
    if unknown:
        lc.errors.append(f"model.params.lossconfig.params: unknown key(s) {', '.join(unknown)} "
                         "for VQLPIPSWithDiscriminator")
    out["loss"] = {"kind": "vqlpips", **{k: v for k, v in lc.loss_params.items() if k in LOSS_KEYS}}


def custom_dataset(split_name: str, params: dict, out: dict, errors: list[str]) -> None:
    """taming.data.custom.CustomTrain/CustomTest: an image list file and a size (scale the short side to size,
    centre crop: taming/data/base.py ImagePaths, as vqfast's loaders do)."""
    key = "training_images_list_file" if split_name == "train" else "test_images_list_file"
    data = out.setdefault("data", {})
    data["kind"] = "images"
    listed = params.pop(key, None)
    if listed is None:
        errors.append(f"data.params.{split_name}.params.{key} is missing")
    elif split_name == "test":
        pass  # taming's test split is not used in training (main.py fits on train, validates on validation)
    else:
        data["train_list" if split_name == "train" else "val_list"] = str(listed)
    lightning.take_size(split_name, params, data, errors)
    for k in sorted(params):
        errors.append(f"data.params.{split_name}.params.{k}: unknown key of taming's Custom dataset")


def translate(raw: dict, where: str) -> dict[str, Any]:
    lc = lightning.split(raw, where)
    out: dict[str, Any] = {"model": {"type": MODEL_TARGETS[lc.target]}, "train": {}, "data": {}}
    translate_model_params(lc, out["model"])
    translate_vqlpips_loss(lc, out)
    if lc.base_learning_rate is not None:
        out["train"]["base_learning_rate"] = lc.base_learning_rate
        out["train"]["scale_lr"] = True
    factor = lightning.translate_trainer(lc, out)

    def custom(split_name: str, params: dict, into: dict) -> None:
        custom_dataset(split_name, params, into, lc.errors)

    lightning.translate_data(lc, out, {"custom.CustomTrain": custom, "custom.CustomTest": custom}, factor)
    return lightning.finish(lc, out)
