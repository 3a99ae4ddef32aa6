"""Latent StarGAN v2 (SPEC §4.2; seed 003) on 4-channel SD-VAE latents, with StarGAN v2 options (§4.1).

Networks (latent variant, no spatial resampling in G):
- ``Generator``: conv 4→C, IN(affine), LReLU, conv C→C, IN(affine), LReLU; ``n_res_blocks`` ×
  ``AdaINResBlock(C)``; conv C→C/2, LReLU, conv C/2→4. (B, 4, H, W) → (B, 4, H, W).
- ``StyleEncoder``: conv 4→C/2, LReLU; conv s2 C/2→C, LReLU; conv s2 C→C, LReLU; global mean; one
  Linear(C→style_dim) head per domain, gathered at y.
- ``MappingNetwork``: ``n_shared`` × (Linear+ReLU) 16→512…; one Linear(512→style_dim) head per domain.
- ``Discriminator``: PatchGAN, conv 4→d_dim, then ``max(1, d_layers−1)`` convs (stride 2 for the first
  two, channels ×2 capped at ``base_dim``), conv1x1 → num_domains, gathered at y → (B, 1, H', W').

Instance statistics (AdaIN and the affine instance norms) go through ``vqfast.ops.channel_stats`` with
biased variance and eps 1e-5 inside the sqrt — the hot path of the step (Triton on CUDA).

``norm="group"`` is seed 003's later ``exp_branch: AdaGN_*`` (GroupNorm(num_groups), eps 1e-5, in AdaIN without
affine and in G's input stem with affine). ``convert_original_state_dict`` maps the original project's
``model.py`` key names (``encoder.0``, ``res_blocks.i.adain1.fc``, ``unshared.i``, old-style spectral norm's
``weight_orig/weight_u/weight_v``, torch.compile's ``_orig_mod.`` prefix) onto these modules.
"""
from __future__ import annotations

import copy
import logging
from typing import Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqfast.errors import InputError
from vqfast.ops import channel_stats

log = logging.getLogger("vqfast")

__all__ = ["AdaIN", "InstanceNorm", "AdaINResBlock", "Generator", "StyleEncoder", "MappingNetwork",
           "Discriminator", "LatentStarGAN", "he_init", "ema_update_", "ORIGINAL_NETS", "convert_original_state_dict"]


def _check_labels(y: torch.Tensor, batch: int, num_domains: int, who: str) -> None:
    if y.dim() != 1 or y.shape[0] != batch:
        raise InputError(f"{who}: domain labels must have shape ({batch},), got {tuple(y.shape)}")
    if y.dtype not in (torch.int64, torch.int32):
        raise InputError(f"{who}: domain labels must be int64 or int32, got {y.dtype}")


def _gather_domain(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """out (B, N, ...) → out[b, y_b] (B, ...)."""
    idx = y.long().view(-1, *([1] * (out.dim() - 1)))               # (B, 1, ...)
    idx = idx.expand(-1, 1, *out.shape[2:])                          # (B, 1, ...)
    return out.gather(1, idx).squeeze(1)                             # (B, ...)


def _normalize(x: torch.Tensor, backend: str) -> torch.Tensor:
    """Instance normalisation (x − μ)/σ, biased variance, eps 1e-5, statistics via channel_stats."""
    mean, std = channel_stats(x, eps=1e-5, unbiased=False, backend=backend, check_values=False)  # (B, C) each
    return (x - mean[:, :, None, None]) / std[:, :, None, None]     # (B, C, H, W)


class InstanceNorm(nn.Module):
    """InstanceNorm2d(affine=True) (weight 1, bias 0 at init) on channel_stats."""

    def __init__(self, channels: int, backend: str = "auto"):
        super().__init__()
        self.backend = backend
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _normalize(x, self.backend)                              # (B, C, H, W)
        return h * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class AdaIN(nn.Module):
    """out = (1 + γ)·IN(x) + β with (γ, β) = fc(s); fc zero-initialised (latent variant) so it starts as IN."""

    def __init__(self, style_dim: int, channels: int, backend: str = "auto", zero_init: bool = True,
                 num_groups: Optional[int] = None):
        super().__init__()
        if num_groups is not None and channels % num_groups:
            raise InputError(f"AdaIN: channels={channels} is not divisible by num_groups={num_groups}")
        self.backend, self.num_groups = backend, num_groups
        self.fc = nn.Linear(style_dim, 2 * channels)
        if zero_init:
            nn.init.zeros_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.fc(s).chunk(2, dim=1)                     # (B, C) each
        if self.num_groups is None:
            h = _normalize(x, self.backend)                          # (B, C, H, W)
        else:                                                        # seed 003 AdaGN: GroupNorm(affine=False)
            h = F.group_norm(x, self.num_groups, eps=1e-5)           # (B, C, H, W)
        return (1 + gamma[:, :, None, None]) * h + beta[:, :, None, None]


class AdaINResBlock(nn.Module):
    """AdaIN → LReLU(0.2) → conv3x3 → AdaIN → LReLU → conv3x3, plus the identity (no /√2, no resampling)."""

    def __init__(self, channels: int, style_dim: int, backend: str = "auto", num_groups: Optional[int] = None):
        super().__init__()
        self.norm1 = AdaIN(style_dim, channels, backend, num_groups=num_groups)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = AdaIN(style_dim, channels, backend, num_groups=num_groups)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(self.norm1(x, s), 0.2))          # (B, C, H, W)
        h = self.conv2(F.leaky_relu(self.norm2(h, s), 0.2))          # (B, C, H, W)
        return x + h


class Generator(nn.Module):
    """G(x, s): (B, latent_channels, H, W), (B, style_dim) → (B, latent_channels, H, W)."""

    def __init__(self, latent_channels: int = 4, style_dim: int = 64, base_dim: int = 256, n_res_blocks: int = 4,
                 backend: str = "auto", num_groups: Optional[int] = None):
        super().__init__()
        self.latent_channels, self.style_dim = latent_channels, style_dim

        def stem_norm() -> nn.Module:  # seed 003: InstanceNorm2d(affine) or, AdaGN branches, GroupNorm(affine)
            if num_groups is None:
                return InstanceNorm(base_dim, backend)
            return nn.GroupNorm(num_groups, base_dim, eps=1e-5, affine=True)
        self.conv_in1 = nn.Conv2d(latent_channels, base_dim, 3, padding=1)
        self.norm_in1 = stem_norm()
        self.conv_in2 = nn.Conv2d(base_dim, base_dim, 3, padding=1)
        self.norm_in2 = stem_norm()
        self.blocks = nn.ModuleList(AdaINResBlock(base_dim, style_dim, backend, num_groups)
                                    for _ in range(n_res_blocks))
        self.conv_out1 = nn.Conv2d(base_dim, base_dim // 2, 3, padding=1)
        self.conv_out2 = nn.Conv2d(base_dim // 2, latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.latent_channels:
            raise InputError(f"Generator: x must be (B, {self.latent_channels}, H, W), got {tuple(x.shape)}")
        if s.shape != (x.shape[0], self.style_dim):
            raise InputError(f"Generator: style must be ({x.shape[0]}, {self.style_dim}), got {tuple(s.shape)}")
        h = F.leaky_relu(self.norm_in1(self.conv_in1(x)), 0.2)       # (B, C, H, W)
        h = F.leaky_relu(self.norm_in2(self.conv_in2(h)), 0.2)       # (B, C, H, W)
        for block in self.blocks:
            h = block(h, s)                                          # (B, C, H, W)
        h = F.leaky_relu(self.conv_out1(h), 0.2)                     # (B, C/2, H, W)
        return self.conv_out2(h)                                     # (B, latent_channels, H, W)


class MappingNetwork(nn.Module):
    """F(z, y): (B, latent_dim) noise → (B, style_dim) style of domain y."""

    def __init__(self, latent_dim: int = 16, style_dim: int = 64, num_domains: int = 2, hidden_dim: int = 512,
                 n_shared: int = 3):
        super().__init__()
        if n_shared < 1:
            raise InputError(f"MappingNetwork: n_shared={n_shared} must be >= 1")
        self.latent_dim, self.num_domains = latent_dim, num_domains
        layers: list[nn.Module] = []
        dim = latent_dim
        for _ in range(n_shared):
            layers += [nn.Linear(dim, hidden_dim), nn.ReLU()]
            dim = hidden_dim
        self.shared = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(hidden_dim, style_dim) for _ in range(num_domains))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise InputError(f"MappingNetwork: z must be (B, {self.latent_dim}), got {tuple(z.shape)}")
        _check_labels(y, z.shape[0], self.num_domains, "MappingNetwork")
        h = self.shared(z)                                           # (B, hidden)
        out = torch.stack([head(h) for head in self.heads], dim=1)   # (B, N, style_dim)
        return _gather_domain(out, y)                                # (B, style_dim)


class StyleEncoder(nn.Module):
    """E(x, y): (B, latent_channels, H, W) → (B, style_dim) style of domain y."""

    def __init__(self, latent_channels: int = 4, style_dim: int = 64, num_domains: int = 2, base_dim: int = 256,
                 mid_dim: Optional[int] = None):
        super().__init__()
        self.latent_channels, self.num_domains = latent_channels, num_domains
        mid = base_dim // 2 if mid_dim is None else mid_dim  # seed 003 model.py: max(base_dim // 2, 64)
        self.trunk = nn.Sequential(
            nn.Conv2d(latent_channels, mid, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(mid, base_dim, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(base_dim, base_dim, 3, stride=2, padding=1), nn.LeakyReLU(0.2))
        self.heads = nn.ModuleList(nn.Linear(base_dim, style_dim) for _ in range(num_domains))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.latent_channels:
            raise InputError(f"StyleEncoder: x must be (B, {self.latent_channels}, H, W), got {tuple(x.shape)}")
        _check_labels(y, x.shape[0], self.num_domains, "StyleEncoder")
        h = self.trunk(x).mean(dim=(2, 3))                           # (B, C)
        out = torch.stack([head(h) for head in self.heads], dim=1)   # (B, N, style_dim)
        return _gather_domain(out, y)                                # (B, style_dim)


class Discriminator(nn.Module):
    """D(x, y): multi-domain PatchGAN → (B, 1, H', W') logits of domain y (8×8 for 32² and d_layers 3)."""

    def __init__(self, latent_channels: int = 4, num_domains: int = 2, base_dim: int = 256, d_layers: int = 3,
                 d_dim: int = 64, spectral_norm: bool = False):
        super().__init__()
        self.latent_channels, self.num_domains = latent_channels, num_domains
        wrap = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = [wrap(nn.Conv2d(latent_channels, d_dim, 3, padding=1)), nn.LeakyReLU(0.2)]
        ch = d_dim
        for i in range(max(1, d_layers - 1)):
            out = min(ch * 2, base_dim)
            layers += [wrap(nn.Conv2d(ch, out, 3, stride=2 if i < 2 else 1, padding=1)), nn.LeakyReLU(0.2)]
            ch = out
        layers.append(wrap(nn.Conv2d(ch, num_domains, 1)))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.latent_channels:
            raise InputError(f"Discriminator: x must be (B, {self.latent_channels}, H, W), got {tuple(x.shape)}")
        _check_labels(y, x.shape[0], self.num_domains, "Discriminator")
        out = self.main(x)                                           # (B, N, H', W')
        return _gather_domain(out, y).unsqueeze(1)                   # (B, 1, H', W')


def he_init(module: nn.Module) -> None:
    """StarGAN v2 ``he_init``: kaiming normal (fan_in, relu) on Conv2d/Linear weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@torch.no_grad()
def ema_update_(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """θ_ema ← β·θ_ema + (1−β)·θ over parameters (buffers are not averaged, as in StarGAN v2)."""
    ema_params = list(ema.parameters())
    params = list(model.parameters())
    torch._foreach_lerp_(ema_params, params, 1.0 - beta)


class LatentStarGAN(nn.Module):
    """The four networks (``generator``, ``style_encoder``, ``mapping``, ``discriminator``) and optional EMA copies
    (``generator_ema``, ``style_encoder_ema``, ``mapping_ema``; β = ``ema_beta``) used for sampling.

    ``init="default"`` (latent variant): PyTorch default init, zero AdaIN fc. ``init="he"`` (StarGAN v2): EMA
    copies are taken first, then he_init is applied to the trained nets only.
    """

    def __init__(self, *, latent_channels: int = 4, style_dim: int = 64, base_dim: int = 256, n_res_blocks: int = 4,
                 num_domains: int = 2, d_layers: int = 3, latent_dim: int = 16, mapping_hidden_dim: int = 512,
                 mapping_shared_layers: int = 3, d_dim: int = 64, d_spectral_norm: bool = False,
                 ema: bool = False, ema_beta: float = 0.999, init: Literal["default", "he"] = "default",
                 backend: str = "auto", norm: Literal["instance", "group"] = "instance", num_groups: int = 32,
                 style_mid_dim: Optional[int] = None):
        super().__init__()
        if num_domains < 2:
            raise InputError(f"LatentStarGAN: num_domains={num_domains} must be >= 2")
        if init not in ("default", "he"):
            raise InputError(f"LatentStarGAN: init={init!r}; allowed: 'default', 'he'")
        if not 0.0 <= ema_beta < 1.0:
            raise InputError(f"LatentStarGAN: ema_beta={ema_beta} must be in [0, 1)")
        if norm not in ("instance", "group"):
            raise InputError(f"LatentStarGAN: norm={norm!r}; allowed: 'instance', 'group'")
        self.num_domains, self.latent_dim, self.ema_beta = num_domains, latent_dim, ema_beta
        groups = num_groups if norm == "group" else None
        self.generator = Generator(latent_channels, style_dim, base_dim, n_res_blocks, backend, groups)
        self.style_encoder = StyleEncoder(latent_channels, style_dim, num_domains, base_dim, style_mid_dim)
        self.mapping = MappingNetwork(latent_dim, style_dim, num_domains, mapping_hidden_dim, mapping_shared_layers)
        self.discriminator = Discriminator(latent_channels, num_domains, base_dim, d_layers, d_dim, d_spectral_norm)
        self.generator_ema: Optional[nn.Module] = None
        self.style_encoder_ema: Optional[nn.Module] = None
        self.mapping_ema: Optional[nn.Module] = None
        if ema:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
            self.style_encoder_ema = copy.deepcopy(self.style_encoder).requires_grad_(False)
            self.mapping_ema = copy.deepcopy(self.mapping).requires_grad_(False)
        if init == "he":
            for net in (self.generator, self.style_encoder, self.mapping, self.discriminator):
                he_init(net)

    @property
    def has_ema(self) -> bool:
        return self.generator_ema is not None

    def update_ema(self) -> None:
        if self.has_ema:
            ema_update_(self.generator_ema, self.generator, self.ema_beta)
            ema_update_(self.style_encoder_ema, self.style_encoder, self.ema_beta)
            ema_update_(self.mapping_ema, self.mapping, self.ema_beta)

    def sampling_nets(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(G, E, F) for sampling: the EMA copies when present, else the trained nets."""
        if self.has_ema:
            return self.generator_ema, self.style_encoder_ema, self.mapping_ema
        return self.generator, self.style_encoder, self.mapping


ORIGINAL_NETS = {"G": "generator", "F": "mapping", "E": "style_encoder", "D": "discriminator"}
"""seed 003 checkpoint entries (``trainer.py`` ``_save_checkpoint``) → ``LatentStarGAN`` attributes."""

_G_STEM = {"encoder.0": "conv_in1", "encoder.1": "norm_in1", "encoder.3": "conv_in2", "encoder.4": "norm_in2",
           "decoder.0": "conv_out1", "decoder.2": "conv_out2"}


def _rename_original(net: str, key: str) -> str:
    key = key.removeprefix("_orig_mod.")  # the original saves torch.compile'd modules
    head, _, rest = key.partition(".")
    if net == "G":
        for old, new in _G_STEM.items():
            if key.startswith(old + "."):
                return new + key[len(old):]
        if head == "res_blocks":
            i, _, sub = rest.partition(".")
            for old, new in (("adain1.", "norm1."), ("adagn1.", "norm1."), ("adain2.", "norm2."),
                             ("adagn2.", "norm2.")):
                if sub.startswith(old):
                    sub = new + sub[len(old):]
            return f"blocks.{i}.{sub}"
    elif net in ("F", "E") and head == "unshared":
        return "heads." + rest
    elif net == "E" and head == "shared":
        return "trunk." + rest
    elif net == "D":  # torch.nn.utils.spectral_norm (hooks) → parametrizations.spectral_norm
        for old, new in (("weight_orig", "parametrizations.weight.original"), ("weight_u", "parametrizations.weight.0._u"),
                         ("weight_v", "parametrizations.weight.0._v")):
            if key.endswith("." + old):
                return key[: -len(old)] + new
    return key


def convert_original_state_dict(net: str, state: dict) -> dict:
    """One seed-003 network state dict (``net`` in G/F/E/D) → this module's key names (values untouched)."""
    if net not in ORIGINAL_NETS:
        raise InputError(f"convert_original_state_dict: net={net!r}; allowed: {', '.join(ORIGINAL_NETS)}")
    return {_rename_original(net, k): v for k, v in state.items()}
