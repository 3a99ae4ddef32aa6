"""taming VQGAN: ``VQModel`` and ``EMAVQ`` (SPEC.md §1.6), plus re-exported Encoder/Decoder.

Same state-dict names as taming (``encoder.*``, ``decoder.*``, ``quantize.embedding.weight``,
``quant_conv.*``, ``post_quant_conv.*``, optionally ``loss.*``) so taming checkpoints load and give the
same outputs. ``forward(x)`` returns ``(reconstruction, codebook_loss)`` as taming does;
``vq_forward(x)`` answers the pipeline adapter contract ``(vq_loss, reconstruction, perplexity, indices)``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn as nn

from vqfast.models.taming_autoencoder import Decoder, Encoder

__all__ = ["Encoder", "Decoder", "VQModel", "EMAVQ", "load_state_dict_file"]

log = logging.getLogger("vqfast")


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a taming/Lightning checkpoint (``{"state_dict": ...}``) or a bare state dict, safely."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # corrupt / truncated / pickled code
        raise ValueError(f"cannot read checkpoint {os.fspath(path)!r}: {type(exc).__name__}: {exc}") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint {os.fspath(path)!r} holds a {type(obj).__name__}, expected a state dict")
    return dict(obj)


class VQModel(nn.Module):
    """taming ``VQModel``: encoder → quant_conv → VectorQuantizer → post_quant_conv → decoder.

    ``loss`` (optional) is kept as a child named ``loss`` only so full taming checkpoints round-trip;
    the vqfast trainer owns the loss separately.
    """

    quantizer_kind = "vq"

    def __init__(self, ddconfig: Mapping[str, Any], n_embed: int, embed_dim: int, *, beta: float = 0.25,
                 legacy: bool = True, backend: str = "auto", ckpt_path: str | None = None,
                 ignore_keys: Sequence[str] = (), loss: nn.Module | None = None, decay: float = 0.99,
                 eps: float = 1e-5, quantizer: nn.Module | None = None,
                 quantizer_kwargs: Mapping[str, Any] | None = None):
        super().__init__()
        ddconfig = dict(ddconfig)
        if ddconfig.get("double_z", False):
            raise ValueError("ddconfig.double_z=True doubles the encoder output for a KL model; "
                             "a VQ model needs double_z=False")
        ddconfig["double_z"] = False
        self.ddconfig = ddconfig
        self.n_embed, self.embed_dim = int(n_embed), int(embed_dim)
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        # quantizer: any vqfast.quantize module (FSQ, LFQ, ResidualVQ, ...) taking embed_dim channels;
        # quantizer_kwargs: codebook-health options of the built-in taming quantizer
        if quantizer is not None and quantizer_kwargs:
            raise ValueError("VQModel: give quantizer_kwargs for the built-in quantizer or a quantizer, not both")
        self.quantize = quantizer if quantizer is not None else self._build_quantizer(
            n_embed, embed_dim, beta=beta, legacy=legacy, backend=backend, decay=decay, eps=eps,
            **dict(quantizer_kwargs or {}))
        if quantizer is not None:
            self.n_embed = int(getattr(quantizer, "codebook_size", n_embed))
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)
        if loss is not None:
            self.loss = loss
        if ckpt_path is not None:
            self.init_from_ckpt(ckpt_path, ignore_keys=ignore_keys)

    def _build_quantizer(self, n_embed, embed_dim, *, beta, legacy, backend, decay, eps, **codebook) -> nn.Module:
        """``codebook``: the quantizer's codebook-health options (restart_dead_codes, dead_code_steps,
        kmeans_init, kmeans_iters; ``vqfast.quantize.base.QuantizerBase``)."""
        from vqfast.quantize import VectorQuantizer
        return VectorQuantizer(n_embed, embed_dim, beta=beta, legacy=legacy, backend=backend, **codebook)

    # ---- checkpoints -------------------------------------------------------------------------
    def init_from_ckpt(self, path: str | os.PathLike | Mapping[str, torch.Tensor],
                       ignore_keys: Sequence[str] = ()) -> tuple[list[str], list[str]]:
        """Load a taming checkpoint non-strictly (taming ``init_from_ckpt``); returns (missing, unexpected).

        Keys under ``loss.`` are dropped when this model has no ``loss`` child.
        """
        sd = dict(path) if isinstance(path, Mapping) else load_state_dict_file(path)
        for key in list(sd):
            if any(key.startswith(prefix) for prefix in ignore_keys):
                del sd[key]
            elif key.startswith("loss.") and not hasattr(self, "loss"):
                del sd[key]
        result = self.load_state_dict(sd, strict=True)
        if result.missing_keys:
            log.warning("VQModel.init_from_ckpt: %d missing keys, e.g. %s", len(result.missing_keys),
                        result.missing_keys[:3])
        if result.unexpected_keys:
            log.warning("VQModel.init_from_ckpt: %d unexpected keys, e.g. %s", len(result.unexpected_keys),
                        result.unexpected_keys[:3])
        return list(result.missing_keys), list(result.unexpected_keys)

    # ---- taming API --------------------------------------------------------------------------
    def encode(self, x: torch.Tensor):
        h = self.quant_conv(self.encoder(x))  # (B, embed_dim, h, w)
        quant, emb_loss, info = self.quantize(h)  # (B, embed_dim, h, w), (), (perplexity, None, indices)
        return quant, emb_loss, info

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quant))  # (B, out_ch, H, W)

    def decode_code(self, indices: torch.Tensor) -> torch.Tensor:
        """Decode integer codes ``(B, h, w)`` (taming's ``decode_code``, which is broken there)."""
        if indices.dim() != 3:
            raise ValueError(f"decode_code expects indices of shape (B, h, w), got {tuple(indices.shape)}")
        b, h, w = indices.shape
        quant = self.quantize.get_codebook_entry(indices.reshape(-1), (b, h, w, self.embed_dim))  # (B, D, h, w)
        return self.decode(quant)

    def forward(self, x: torch.Tensor):
        quant, diff, _ = self.encode(x)
        return self.decode(quant), diff

    # ---- vqfast API --------------------------------------------------------------------------
    def vq_forward(self, x: torch.Tensor):
        """Adapter contract (SPEC §3.2): ``(vq_loss, reconstruction, perplexity, indices[B, h, w])``."""
        quant, vq_loss, info = self.encode(x)
        recon = self.decode(quant)  # (B, out_ch, H, W)
        perplexity = info[0] if info[0] is not None else torch.ones((), device=x.device)
        # (B, h, w); residual quantizers return (N, Q) codes: their first (coarse) stage is reported
        indices = info[2].reshape(quant.shape[0], quant.shape[2], quant.shape[3], -1)[..., 0]
        return vq_loss, recon, perplexity, indices

    @property
    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    @property
    def output_channels(self) -> int:
        return self.decoder.conv_out.out_channels

    @property
    def vocab_size(self) -> int:
        return self.n_embed

    @property
    def quantizers(self) -> list[nn.Module]:
        return [self.quantize]

    def ae_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters opt_ae steps: encoder, decoder, quantizer, quant convs (never ``loss``)."""
        modules: Iterable[nn.Module] = (self.encoder, self.decoder, self.quantize, self.quant_conv,
                                        self.post_quant_conv)
        for module in modules:
            yield from (p for p in module.parameters() if p.requires_grad)


class EMAVQ(VQModel):
    """taming ``EMAVQ``: EMA codebook (never in an optimizer); loss = β·commitment only."""

    quantizer_kind = "ema"

    def _build_quantizer(self, n_embed, embed_dim, *, beta, legacy, backend, decay, eps, **codebook) -> nn.Module:
        from vqfast.quantize import EMAVectorQuantizer
        return EMAVectorQuantizer(n_embed, embed_dim, beta=beta, decay=decay, eps=eps, backend=backend, **codebook)

    def ae_parameters(self) -> Iterator[nn.Parameter]:
        for module in (self.encoder, self.decoder, self.quant_conv, self.post_quant_conv):
            yield from (p for p in module.parameters() if p.requires_grad)
