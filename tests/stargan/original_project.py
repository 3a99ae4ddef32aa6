"""Files in the seed-003 project's own layout, written the way that project writes them.

``OriginalNets`` re-states the structure of the original ``model.py`` (``exp_branch`` version: ``encoder`` /
``res_blocks.i.adain1|adagn1`` / ``decoder`` Sequentials, ``shared`` / ``unshared`` heads, D ``main`` with
``torch.nn.utils.spectral_norm`` hooks) so its ``state_dict()`` carries the original key names and its forwards
are the reference the converted vqfast nets must reproduce. ``CONFIG`` is the original
``configs/stargan_v2_latent.yaml`` layout with tiny sizes.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import yaml
from torch.nn.utils import spectral_norm

CONFIG = {
    "experiment": {"name": "tiny_orig"},
    "model": {"exp_branch": "baseline_AdaIN", "latent_channels": 4, "style_dim": 16, "base_dim": 64, "num_groups": 32,
              "num_domains": 2, "n_res_blocks": 1, "d_layers": 3, "latent_dim": 8, "mapping_hidden_dim": 32,
              "mapping_shared_layers": 3},
    "loss": {"w_adv": 1.0, "w_sty": 1.0, "w_ds": 1.0, "ds_margin": 1.5, "w_cyc": 1.0, "w_id": 1.0, "w_r1": 2.0,
             "r1_interval": 16, "ds_decay_epochs": 20},
    "training": {"seed": 42, "batch_size": 4, "num_epochs": 2, "lr_g": 1.0e-4, "lr_d": 1.0e-4, "lr_mapping": 1.0e-6,
                 "weight_decay": 1.0e-4, "lr_schedule": "cosine", "warmup_steps": 200, "min_lr_ratio": 0.1,
                 "use_amp": True, "amp_dtype": "bf16", "allow_tf32": True, "cudnn_benchmark": True,
                 "optim_fused": True, "latent_scale": 0.18215, "num_workers": 0, "pin_memory": True,
                 "use_compile": True, "compile_mode": "default", "compile_dynamic": False,
                 "compile_fullgraph": False, "compile_cudagraphs": False, "compile_generator": True,
                 "compile_mapping_network": True, "compile_style_encoder": True, "compile_discriminator": False,
                 "drop_last": True, "progress_bar": False, "progress_style": "percent", "display_interval": 500,
                 "log_json": True, "log_interval": 50, "save_interval": 1,
                 "console_log_path": "{outputs_dir}/console.log"},
    "visualization": {"every_epochs": 1, "vae_model_name_or_path": "runwayml/stable-diffusion-v1-5",
                      "vae_subfolder": "vae", "suppress_hf_warnings": True, "num_samples": 3,
                      "save_dir": "{outputs_dir}/vis", "random_noise_seed": 42, "eval_dir": "{outputs_dir}/eval",
                      "auto_eval_latest": True},
    "data": {"data_root": "LATENTS", "eval_data_root": "LATENTS", "domains": ["photo", "monet"],
             "preload_to_gpu": True, "epoch_size": 4},
    "checkpoint": {"save_dir": "{outputs_dir}/ckpt", "resume_path": "{outputs_dir}/ckpt/latest.pt"},
    "eval": {"checkpoint_path": "{outputs_dir}/ckpt/latest.pt", "mode": "both"},
}


def write_config(path: Path, data_root: Path, **changes) -> Path:
    cfg = copy.deepcopy(CONFIG)
    cfg["data"]["data_root"] = cfg["data"]["eval_data_root"] = str(data_root)
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        cfg[section][key] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def write_latents(root: Path, domains=("photo", "monet"), per_domain=3, size=16, seed=0) -> dict[str, list]:
    """root/<domain>/<i>.pt in the forms the original reads: a 1×C×H×W tensor, a {"latent": C×H×W} dict, and a
    C×H×W .npy. Returns the latents per domain in sorted file order."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for d in domains:
        folder = root / d
        folder.mkdir(parents=True, exist_ok=True)
        items = []
        for i in range(per_domain):
            t = torch.randn(4, size, size, generator=g) * 5
            name = folder / f"{i:03d}"
            if i % 3 == 0:
                torch.save(t.unsqueeze(0), name.with_suffix(".pt"))
            elif i % 3 == 1:
                torch.save({"latent": t, "path": "img.png"}, name.with_suffix(".pt"))
            else:
                np.save(name.with_suffix(".npy"), t.numpy())
            items.append((name.name, t))
        out[d] = [t for _, t in sorted(items)]
    return out


class _Norm(nn.Module):
    def __init__(self, c, style_dim, gn, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, affine=False, eps=1e-5) if gn else nn.InstanceNorm2d(c, affine=False)
        self.fc = nn.Linear(style_dim, 2 * c)

    def forward(self, x, s):
        gamma, beta = self.fc(s).chunk(2, dim=1)
        return (1 + gamma[..., None, None]) * self.norm(x) + beta[..., None, None]


class _Block(nn.Module):
    def __init__(self, c, style_dim, gn, groups):
        super().__init__()
        self.prefix = "adagn" if gn else "adain"
        setattr(self, self.prefix + "1", _Norm(c, style_dim, gn, groups))
        setattr(self, self.prefix + "2", _Norm(c, style_dim, gn, groups))
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, s):
        h = self.conv1(nn.functional.leaky_relu(getattr(self, self.prefix + "1")(x, s), 0.2))
        return x + self.conv2(nn.functional.leaky_relu(getattr(self, self.prefix + "2")(h, s), 0.2))


class OriginalNets(nn.Module):
    def __init__(self, m: dict):
        super().__init__()
        self.model_cfg = dict(m)
        gn = m.get("exp_branch", "baseline_AdaIN") != "baseline_AdaIN"
        sn = m.get("exp_branch", "baseline_AdaIN") != "AdaGN_no_SN"
        c, s, lc, n, groups = m["base_dim"], m["style_dim"], m["latent_channels"], m["num_domains"], m["num_groups"]

        def stem():
            return nn.GroupNorm(groups, c, affine=True) if gn else nn.InstanceNorm2d(c, affine=True)
        g = nn.Module()
        g.encoder = nn.Sequential(nn.Conv2d(lc, c, 3, padding=1), stem(), nn.LeakyReLU(0.2),
                                  nn.Conv2d(c, c, 3, padding=1), stem(), nn.LeakyReLU(0.2))
        g.res_blocks = nn.ModuleList(_Block(c, s, gn, groups) for _ in range(m["n_res_blocks"]))
        g.decoder = nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(c // 2, lc, 3, padding=1))
        f = nn.Module()
        layers, dim = [], m["latent_dim"]
        for _ in range(m["mapping_shared_layers"]):
            layers += [nn.Linear(dim, m["mapping_hidden_dim"]), nn.ReLU()]
            dim = m["mapping_hidden_dim"]
        f.shared = nn.Sequential(*layers)
        f.unshared = nn.ModuleList(nn.Linear(dim, s) for _ in range(n))
        e = nn.Module()
        mid = max(c // 2, 64)
        e.shared = nn.Sequential(nn.Conv2d(lc, mid, 3, padding=1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(mid, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(c, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1))
        e.unshared = nn.ModuleList(nn.Linear(c, s) for _ in range(n))
        wrap = spectral_norm if sn else (lambda mod: mod)
        d = nn.Module()
        layers, ch = [wrap(nn.Conv2d(lc, c // 4, 3, padding=1)), nn.LeakyReLU(0.2)], c // 4
        for i in range(max(1, m["d_layers"] - 1)):
            out = min(c, ch * 2)
            layers += [wrap(nn.Conv2d(ch, out, 3, stride=2 if i < 2 else 1, padding=1)), nn.LeakyReLU(0.2)]
            ch = out
        layers.append(wrap(nn.Conv2d(ch, n, 1)))
        d.main = nn.Sequential(*layers)
        self.G, self.F, self.E, self.D = g, f, e, d
        for p in self.parameters():  # non-trivial values everywhere (the AdaIN fc starts at zero otherwise)
            with torch.no_grad():
                p.add_(torch.randn_like(p) * 0.05)

    def gen(self, x, s):
        h = self.G.encoder(x)
        for blk in self.G.res_blocks:
            h = blk(h, s)
        return self.G.decoder(h)

    @staticmethod
    def _pick(outs, y):
        return torch.stack(outs, 1)[torch.arange(y.shape[0]), y]

    def mapping(self, z, y):
        h = self.F.shared(z)
        return self._pick([head(h) for head in self.F.unshared], y)

    def style(self, x, y):
        h = self.E.shared(x).flatten(1)
        return self._pick([head(h) for head in self.E.unshared], y)

    def disc(self, x, y):
        return self.D.main(x)[torch.arange(y.shape[0]), y].unsqueeze(1)

    def checkpoint(self, epoch: int, global_step: int, compiled: bool = False) -> dict:
        """The original ``_save_checkpoint`` payload; ``compiled`` adds torch.compile's ``_orig_mod.`` prefix."""
        def sd(net, prefix):
            return {prefix + k: v.clone() for k, v in net.state_dict().items()}
        pre = "_orig_mod." if compiled else ""
        opt_g = torch.optim.AdamW([{"params": self.G.parameters(), "lr": 1e-4}, {"params": self.E.parameters(),
                                   "lr": 1e-4}, {"params": self.F.parameters(), "lr": 1e-6}], lr=1e-4,
                                  betas=(0.0, 0.99))
        opt_d = torch.optim.AdamW(self.D.parameters(), lr=1e-4, betas=(0.0, 0.99))
        return {"epoch": epoch, "global_step": global_step, "G": sd(self.G, pre), "F": sd(self.F, pre),
                "E": sd(self.E, pre), "D": sd(self.D, ""), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                "config": dict(copy.deepcopy(CONFIG), model=dict(self.model_cfg))}
