"""QuantArt (SPEC.md §2): stage-1 ``BaseVQGAN``, the style-guided attention ``SGAModule`` and stage-2 ``StyleTransfer``.

State-dict names follow QuantArt so its checkpoints load: ``model_x2y.blocks.{i}.res_block|self_attn_block|
attn_block.*``; stage 2 holds ``encoder, quant_conv, quantize_enc`` (content stage 1), ``encoder_real,
quant_conv_real, quantize_dec, decoder, post_quant_conv`` (style stage 1) and the trainable ``model_x2y``.

Frozen parts are frozen harder than in QuantArt (which relies on ``no_grad`` + optimizer membership only):
their parameters have ``requires_grad=False`` and they stay in eval mode, so no step, no BatchNorm/health buffer
and no stray gradient can change them. Forward values are unchanged by this.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vqfast.errors import CheckpointError, CheckpointNotFoundError
from vqfast.models.taming_autoencoder import Decoder, Encoder
from vqfast.models.taming_blocks import ResnetBlock, normalize
from vqfast.models.vqgan import VQModel

__all__ = [
    "BaseVQGAN",
    "GuidedAttention",
    "SGABlock",
    "SGAModule",
    "Stage1CheckpointError",
    "Stage1CheckpointNotFound",
    "StyleTransfer",
    "read_stage1_state_dict",
    "read_stage2_state_dicts",
]

log = logging.getLogger("vqfast")

VARIANTS = ("quantized", "continuous")


class Stage1CheckpointError(CheckpointError):
    """A stage-1 checkpoint cannot be read or lacks / mismatches the keys stage 2 needs."""


class Stage1CheckpointNotFound(Stage1CheckpointError, CheckpointNotFoundError):
    """The stage-1 checkpoint path does not exist."""


# ---------------------------------------------------------------------------------------------------------------
# Stage 1
# ---------------------------------------------------------------------------------------------------------------
class BaseVQGAN(VQModel):
    """QuantArt's stage-1 ``VQModel``: taming VQGAN + ``use_quantize``, ``freeze_decoder``, ``ckpt_quantize``.

    - ``use_quantize=False``: ``encode`` skips the quantizer, returns ``(h, 0, (None, None, None))``; the loss
      sees a zero codebook loss (QuantArt passes None and its loss reads it as 0).
    - ``freeze_decoder=True``: ``decoder`` and ``post_quant_conv`` leave ``ae_parameters()`` (still run, still get
      gradients, never stepped; see ``frozen_parameters()``) and, with ``ckpt_quantize``, the quantizer is loaded
      from that checkpoint's ``quantize.*`` keys.
    """

    def __init__(self, ddconfig: Mapping[str, Any], n_embed: int, embed_dim: int, *, use_quantize: bool = True,
                 freeze_decoder: bool = False, ckpt_quantize: str | None = None, **kwargs):
        super().__init__(ddconfig, n_embed, embed_dim, **kwargs)
        self.use_quantize = bool(use_quantize)
        self.freeze_decoder = bool(freeze_decoder)
        if self.freeze_decoder and ckpt_quantize is not None:
            sd = read_stage1_state_dict(ckpt_quantize, "ckpt_quantize")
            sub = _take_prefix(sd, "quantize.")
            _require_keys(sub, _loadable_keys(self.quantize), ckpt_quantize, "ckpt_quantize", "quantize.")
            self.quantize.load_state_dict(sub, strict=True)
            log.info("BaseVQGAN: quantizer loaded from %s", ckpt_quantize)

    def encode(self, x: torch.Tensor):
        h = self.quant_conv(self.encoder(x))  # (B, embed_dim, h, w)
        if not self.use_quantize:
            return h, h.new_zeros(()), (None, None, None)
        return self.quantize(h)

    def vq_forward(self, x: torch.Tensor):
        quant, vq_loss, info = self.encode(x)
        recon = self.decode(quant)  # (B, out_ch, H, W)
        b, _, h, w = quant.shape
        perplexity = info[0] if info[0] is not None else torch.ones((), device=x.device)
        if info[2] is None:  # use_quantize=False: no codes; report code 0 so usage statistics stay defined
            indices = torch.zeros(b, h, w, dtype=torch.long, device=x.device)
        else:
            indices = info[2].reshape(b, h, w)  # (B, h, w)
        return vq_loss, recon, perplexity, indices

    def ae_parameters(self) -> Iterator[nn.Parameter]:
        """opt_ae: encoder + quant_conv [+ decoder + post_quant_conv unless frozen] [+ quantize if used]."""
        modules: list[nn.Module] = [self.encoder, self.quant_conv]
        if not self.freeze_decoder:
            modules += [self.decoder, self.post_quant_conv]
        if self.use_quantize:
            modules.append(self.quantize)
        for module in modules:
            yield from (p for p in module.parameters() if p.requires_grad)

    def frozen_parameters(self) -> list[nn.Parameter]:
        """Parameters that run and get gradients but no optimizer steps (decoder side when frozen)."""
        if not self.freeze_decoder:
            return []
        return [*self.decoder.parameters(), *self.post_quant_conv.parameters()]


# ---------------------------------------------------------------------------------------------------------------
# SGA module (QuantArt StyleTransferModule)
# ---------------------------------------------------------------------------------------------------------------
class GuidedAttention(nn.Module):
    """Single-head attention; self-attention without ``ref``, cross-attention on ``ref`` with it.

    The same GroupNorm (``norm``) normalises the query path (x) and the key/value path (ref), as QuantArt's
    ``AttnBlock(x, key)`` does: out = [x +] proj(softmax(q(GN x) k(GN r)^T / sqrt(C)) v(GN r)).
    ``ref`` may have a different spatial size than ``x``.
    """

    def __init__(self, channels: int, residual: bool = True):
        super().__init__()
        self.residual = residual
        self.norm = normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        xn = self.norm(x)
        rn = xn if ref is None else self.norm(ref)  # shared GroupNorm for query and key paths
        q = self.q(xn).flatten(2).transpose(1, 2)  # (B, HW, C)
        k = self.k(rn).flatten(2).transpose(1, 2)  # (B, HrWr, C)
        v = self.v(rn).flatten(2).transpose(1, 2)  # (B, HrWr, C)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C), softmax(q k^T / sqrt(C)) v
        out = self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))  # (B, C, H, W)
        return x + out if self.residual else out


class SGABlock(nn.Module):
    """ResnetBlock (use_conv) → self-attention (use_selfatt) → cross-attention on the reference (if given)."""

    def __init__(self, channels: int, residual: bool = True, use_conv: bool = True, use_selfatt: bool = True):
        super().__init__()
        self.use_conv, self.use_selfatt = use_conv, use_selfatt
        if use_conv:
            self.res_block = ResnetBlock(channels, channels, dropout=0.0)
        if use_selfatt:
            self.self_attn_block = GuidedAttention(channels, residual)
        self.attn_block = GuidedAttention(channels, residual)

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        if self.use_conv:
            x = self.res_block(x)  # (B, C, H, W)
        if self.use_selfatt:
            x = self.self_attn_block(x)
        if ref is not None:
            x = self.attn_block(x, ref)
        return x


class SGAModule(nn.Module):
    """Style-guided attention (QuantArt ``StyleTransferModule``): ``block_num`` SGABlocks on (B, C, H, W) tokens."""

    def __init__(self, channels: int, block_num: int = 6, residual: bool = True, use_conv: bool = True,
                 use_selfatt: bool = True):
        super().__init__()
        if block_num < 1:
            raise ValueError(f"SGAModule: block_num={block_num} must be >= 1")
        self.blocks = nn.Sequential(*(SGABlock(channels, residual, use_conv, use_selfatt) for _ in range(block_num)))

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None, return_all: bool = False):
        outs = []
        for block in self.blocks:
            x = block(x, ref)  # (B, C, H, W)
            outs.append(x)
        return outs if return_all else x

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the last trainable projection (for the optional adaptive GAN weight)."""
        return self.blocks[-1].attn_block.proj_out.weight


# ---------------------------------------------------------------------------------------------------------------
# Stage-1 checkpoint reading
# ---------------------------------------------------------------------------------------------------------------
def read_stage1_state_dict(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """State dict of a stage-1 model from a taming/QuantArt Lightning ``.ckpt``, a bare state dict, or a vqfast
    training checkpoint (``modules.model``). ``what`` names the config key in error messages."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise Stage1CheckpointNotFound(f"{what}: stage-1 checkpoint {path!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise Stage1CheckpointError(f"{what}: cannot read stage-1 checkpoint {path!r} "
                                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
                                    ) from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("modules"), Mapping) and "model" in obj["modules"]:
        obj = obj["modules"]["model"]  # vqfast training checkpoint
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # Lightning checkpoint
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise Stage1CheckpointError(f"{what}: {path!r} holds no state dict of tensors (got {type(obj).__name__})")
    return dict(obj)


def _take_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


# vqfast quantizer health buffers: not in taming/QuantArt checkpoints, never required
_OPTIONAL_SUFFIXES = ("steps_unused", "usage_ema", "restarted_codes", "initted")


def _loadable_keys(module: nn.Module) -> list[str]:
    return [k for k in module.state_dict() if not k.endswith(_OPTIONAL_SUFFIXES)]


def _missing(sub: Mapping[str, torch.Tensor], required: Sequence[str], prefix: str) -> list[str]:
    return [prefix + k for k in required if k not in sub]


def _raise_missing(missing: Sequence[str], path, what: str) -> None:
    if missing:
        shown = ", ".join(missing[:10]) + (f", … ({len(missing)} in all)" if len(missing) > 10 else "")
        raise Stage1CheckpointError(f"{what}: stage-1 checkpoint {os.fspath(path)!r} lacks {len(missing)} key(s) "
                                    f"that stage 2 needs: {shown}")


def _require_keys(sub: Mapping[str, torch.Tensor], required: Sequence[str], path, what: str, prefix: str) -> None:
    _raise_missing(_missing(sub, required, prefix), path, what)


def _load_parts(parts: Sequence[tuple[nn.Module, str]], sd: Mapping[str, torch.Tensor], path, what: str) -> None:
    """Load ``target <- sd[src_prefix*]`` for every part; first check every key and shape, naming all problems."""
    subs = [(target, prefix, _take_prefix(sd, prefix)) for target, prefix in parts]
    _raise_missing([k for target, prefix, sub in subs for k in _missing(sub, _loadable_keys(target), prefix)],
                   path, what)
    bad = []
    for target, prefix, sub in subs:
        own = target.state_dict()
        bad += [f"{prefix}{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                for k, v in sub.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise Stage1CheckpointError(f"{what}: stage-1 checkpoint {os.fspath(path)!r} does not fit the model "
                                    f"built from the config (check ddconfig / n_embed / embed_dim): "
                                    + "; ".join(bad[:5]))
    for target, _, sub in subs:
        own = target.state_dict()
        target.load_state_dict({k: v for k, v in sub.items() if k in own}, strict=True)


def read_stage2_state_dicts(path: str | os.PathLike, what: str = "model.ckpt_path"
                            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(StyleTransfer state dict, latent-discriminator state dict) of a whole stage-2 checkpoint: a QuantArt
    Lightning ``.ckpt`` (``state_dict``: the model's parts and ``loss.discriminator.*``) or a vqfast stage-2
    training checkpoint (``modules.model``, ``modules.discriminator``). The discriminator dict may be empty."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise Stage1CheckpointNotFound(f"{what}: stage-2 checkpoint {path!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{what}: cannot read stage-2 checkpoint {path!r} ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("modules"), Mapping) and "model" in obj["modules"]:
        return dict(obj["modules"]["model"]), dict(obj["modules"].get("discriminator") or {})
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{what}: {path!r} holds no state dict of tensors (got {type(obj).__name__})")
    model = {k: v for k, v in obj.items() if not k.startswith("loss.")}
    return model, _take_prefix(obj, "loss.discriminator.")


# ---------------------------------------------------------------------------------------------------------------
# Stage 2
# ---------------------------------------------------------------------------------------------------------------
class StyleTransfer(nn.Module):
    """QuantArt stage 2 (``VQModel_Ref``): frozen content/style stage-1 parts + trainable ``model_x2y``.

    ``checkpoint_encoder``: content-domain stage 1 → ``encoder, quant_conv, quantize_enc``.
    ``checkpoint_decoder``: style-domain stage 1 → ``encoder_real, quant_conv_real, quantize_dec, decoder,
    post_quant_conv``. A wrong path or a checkpoint lacking keys raises ``Stage1CheckpointError`` naming them.
    ``variant="continuous"`` is QuantArt's ``vqgan_ref_continuous``: un-quantised features in and out, zero
    codebook loss.
    """

    frozen_names = ("encoder", "quant_conv", "quantize_enc", "encoder_real", "quant_conv_real", "quantize_dec",
                    "decoder", "post_quant_conv")

    def __init__(self, ddconfig: Mapping[str, Any], n_embed: int, embed_dim: int, *,
                 checkpoint_encoder: str | None = None, checkpoint_decoder: str | None = None,
                 use_residual: bool = True, use_conv: bool = True, use_selfatt: bool = True, block_num: int = 6,
                 variant: Literal["quantized", "continuous"] = "quantized", beta: float = 0.25, legacy: bool = True,
                 backend: str = "auto", train_quantizers: bool = False):
        super().__init__()
        self.train_quantizers = bool(train_quantizers)
        if variant not in VARIANTS:
            raise ValueError(f"StyleTransfer: variant={variant!r} is not one of {VARIANTS}")
        from vqfast.quantize import VectorQuantizer

        dd = dict(ddconfig)
        if dd.get("double_z", False):
            raise ValueError("ddconfig.double_z=True is for KL models; QuantArt needs double_z=False")
        dd["double_z"] = False
        self.ddconfig, self.n_embed, self.embed_dim, self.variant = dd, int(n_embed), int(embed_dim), variant

        def vq():
            return VectorQuantizer(n_embed, embed_dim, beta=beta, legacy=legacy, backend=backend,
                                   sane_index_shape=True)

        self.encoder = Encoder(**dd)
        self.quant_conv = nn.Conv2d(dd["z_channels"], embed_dim, 1)
        self.quantize_enc = vq()
        self.encoder_real = Encoder(**dd)
        self.quant_conv_real = nn.Conv2d(dd["z_channels"], embed_dim, 1)
        self.quantize_dec = vq()
        self.decoder = Decoder(**dd)
        self.post_quant_conv = nn.Conv2d(embed_dim, dd["z_channels"], 1)
        self.model_x2y = SGAModule(embed_dim, block_num, use_residual, use_conv, use_selfatt)
        self.loaded_stage1 = {"content": checkpoint_encoder is not None, "style": checkpoint_decoder is not None}
        if checkpoint_encoder is not None:
            self.load_content_stage1(checkpoint_encoder)
        if checkpoint_decoder is not None:
            self.load_style_stage1(checkpoint_decoder)
        for name in self.frozen_names:
            getattr(self, name).requires_grad_(False)
        if self.train_quantizers:  # "along with the quantizers in some configs" (seed S1): the output codebook
            self.quantize_dec.requires_grad_(True)
        self.train()

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def load_content_stage1(self, path: str | os.PathLike) -> None:
        what = "checkpoint_encoder"
        sd = read_stage1_state_dict(path, what)
        _load_parts(((self.encoder, "encoder."), (self.quant_conv, "quant_conv."), (self.quantize_enc, "quantize.")),
                    sd, path, what)
        log.info("StyleTransfer: content encoder + quantize_enc loaded from %s", os.fspath(path))

    def load_style_stage1(self, path: str | os.PathLike) -> None:
        what = "checkpoint_decoder"
        sd = read_stage1_state_dict(path, what)
        _load_parts(((self.encoder_real, "encoder."), (self.quant_conv_real, "quant_conv."),
                     (self.quantize_dec, "quantize."), (self.decoder, "decoder."),
                     (self.post_quant_conv, "post_quant_conv.")), sd, path, what)
        log.info("StyleTransfer: style encoder_real + quantize_dec + decoder loaded from %s", os.fspath(path))

    def load_stage2(self, sd: Mapping[str, torch.Tensor], path, what: str = "model.ckpt_path") -> None:
        """Every part from a whole stage-2 state dict (QuantArt ``VQModel_Ref`` names); missing or misfit keys
        (other than vqfast's optional codebook-health buffers) raise ``Stage1CheckpointError`` naming them."""
        parts = [(getattr(self, name), f"{name}.") for name in (*self.frozen_names, "model_x2y")]
        _load_parts(parts, sd, path, what)
        log.info("StyleTransfer: every stage-2 part loaded from %s", os.fspath(path))

    # ---- modes / parameters ----------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> StyleTransfer:
        super().train(mode)
        for name in self.frozen_names:  # frozen parts never leave eval mode (no health/BN buffer updates)
            if not (self.train_quantizers and name == "quantize_dec"):
                getattr(self, name).eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What opt_ae steps: model_x2y only (SPEC §2.4), plus the output codebook ``quantize_dec`` with
        ``train_quantizers`` (its codebook term ‖sg(h_x) − q‖² is the only quantizer gradient in stage 2: the
        content and style encodings, ``quantize_enc`` included, run without a graph as in QuantArt)."""
        params = list(self.model_x2y.parameters())
        if self.train_quantizers:
            params += list(self.quantize_dec.parameters())
        return params

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in self.frozen_names}

    @property
    def last_layer(self) -> torch.Tensor:
        return self.model_x2y.last_layer

    # ---- forward ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_content(self, x: torch.Tensor) -> torch.Tensor:
        h = self.quant_conv(self.encoder(x))  # (B, D, h, w)
        return h if self.variant == "continuous" else self.quantize_enc(h)[0]

    @torch.no_grad()
    def encode_style(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.quant_conv_real(self.encoder_real(ref))  # (B, D, hr, wr)
        if self.variant == "continuous":
            return h, None
        quant, _, info = self.quantize_dec(h)
        return quant, info[2]  # (B, D, hr, wr), (B, hr, wr)

    def transfer(self, x: torch.Tensor, ref: torch.Tensor, quantize: bool | None = None):
        """(quant_x, quant_y, quant_ref, diff_x2y, indices_y, indices_ref) — SPEC §2.2.

        x: content images (B, 3, H, W), ref: style images (B, 3, Hr, Wr), both in [-1, 1]. Only ``quant_y`` and
        ``diff_x2y`` carry gradients (to model_x2y). ``quantize=False`` (or variant continuous) returns the
        continuous h_x as quant_y, a zero codebook loss and ``indices_y=None``.
        """
        quantize = self.variant == "quantized" if quantize is None else quantize
        quant_x = self.encode_content(x)  # (B, D, h, w), no grad
        quant_ref, indices_ref = self.encode_style(ref)  # (B, D, hr, wr), no grad
        h_x = self.model_x2y(quant_x, quant_ref)  # (B, D, h, w)
        if not quantize:
            return quant_x, h_x, quant_ref, h_x.new_zeros(()), None, indices_ref
        quant_y, diff_x2y, info = self.quantize_dec(h_x)  # straight-through: grads reach h_x
        return quant_x, quant_y, quant_ref, diff_x2y, info[2], indices_ref

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quant))  # (B, out_ch, H, W)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Stylised image (B, out_ch, H, W) in [-1, 1] (decode of the transferred latent)."""
        return self.decode(self.transfer(x, ref)[1])
