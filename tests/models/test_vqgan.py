"""VQModel / EMAVQ: taming state-dict names, taming-equivalent forward, adapter contract."""
import torch
import torch.nn.functional as F

from vqfast.models.vqgan import EMAVQ, VQModel

DD = dict(ch=32, out_ch=3, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], in_channels=3,
          resolution=16, z_channels=32, dropout=0.0, double_z=False)

# Names exactly as taming-transformers' VQModel writes them for this ddconfig.
TAMING_KEYS = [
    "encoder.conv_in.weight", "encoder.down.0.block.0.norm1.weight", "encoder.down.0.block.0.conv1.weight",
    "encoder.down.0.downsample.conv.weight", "encoder.down.1.block.0.nin_shortcut.weight",
    "encoder.down.1.attn.0.q.weight", "encoder.down.1.attn.0.proj_out.bias", "encoder.mid.block_1.conv2.bias",
    "encoder.mid.attn_1.k.weight", "encoder.mid.block_2.norm2.bias", "encoder.norm_out.weight",
    "encoder.conv_out.weight", "decoder.conv_in.weight", "decoder.mid.attn_1.v.bias",
    "decoder.up.1.block.1.conv2.weight", "decoder.up.1.attn.1.q.bias", "decoder.up.1.upsample.conv.weight",
    "decoder.up.0.block.0.nin_shortcut.weight", "decoder.up.0.block.1.norm1.weight", "decoder.norm_out.bias",
    "decoder.conv_out.weight", "quantize.embedding.weight", "quant_conv.weight", "quant_conv.bias",
    "post_quant_conv.weight", "post_quant_conv.bias",
]


def _taming_state_dict(seed=0):
    model = VQModel(DD, n_embed=64, embed_dim=8)
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.1 + (1.0 if k.endswith("norm1.weight") else 0.0)
            for k, v in model.state_dict().items()}


# ---- an independent functional re-statement of taming's forward (SPEC §1.1) -------------------
def _gn(x, sd, p):
    return F.group_norm(x, 32, sd[p + ".weight"], sd[p + ".bias"], eps=1e-6)


def _conv(x, sd, p, stride=1, padding=1):
    return F.conv2d(x, sd[p + ".weight"], sd[p + ".bias"], stride=stride, padding=padding)


def _res(x, sd, p):
    h = _conv(F.silu(_gn(x, sd, p + ".norm1")), sd, p + ".conv1")
    h = _conv(F.silu(_gn(h, sd, p + ".norm2")), sd, p + ".conv2")
    if p + ".nin_shortcut.weight" in sd:
        x = _conv(x, sd, p + ".nin_shortcut", padding=0)
    return x + h


def _attn(x, sd, p):
    b, c, h, w = x.shape
    hn = _gn(x, sd, p + ".norm")
    q = _conv(hn, sd, p + ".q", padding=0).reshape(b, c, h * w).permute(0, 2, 1)
    k = _conv(hn, sd, p + ".k", padding=0).reshape(b, c, h * w)
    v = _conv(hn, sd, p + ".v", padding=0).reshape(b, c, h * w)
    a = torch.softmax(torch.bmm(q, k) * c ** -0.5, dim=2)
    out = torch.bmm(v, a.permute(0, 2, 1)).reshape(b, c, h, w)
    return x + _conv(out, sd, p + ".proj_out", padding=0)


def _taming_forward(sd, x):
    h = _conv(x, sd, "encoder.conv_in")
    h = _res(h, sd, "encoder.down.0.block.0")
    h = _conv(F.pad(h, (0, 1, 0, 1)), sd, "encoder.down.0.downsample.conv", stride=2, padding=0)
    h = _attn(_res(h, sd, "encoder.down.1.block.0"), sd, "encoder.down.1.attn.0")
    h = _res(_attn(_res(h, sd, "encoder.mid.block_1"), sd, "encoder.mid.attn_1"), sd, "encoder.mid.block_2")
    h = _conv(F.silu(_gn(h, sd, "encoder.norm_out")), sd, "encoder.conv_out")
    h = _conv(h, sd, "quant_conv", padding=0)
    zf = h.permute(0, 2, 3, 1).reshape(-1, 8)
    e = sd["quantize.embedding.weight"]
    d = zf.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * torch.einsum("bd,dn->bn", zf, e.t())
    zq = e[d.argmin(1)].reshape(h.shape[0], h.shape[2], h.shape[3], 8).permute(0, 3, 1, 2)
    loss = 0.25 * torch.mean((zq - h) ** 2) + torch.mean((zq - h) ** 2)
    h = _conv(_conv(zq, sd, "post_quant_conv", padding=0), sd, "decoder.conv_in")
    h = _res(_attn(_res(h, sd, "decoder.mid.block_1"), sd, "decoder.mid.attn_1"), sd, "decoder.mid.block_2")
    for i in range(2):
        h = _attn(_res(h, sd, f"decoder.up.1.block.{i}"), sd, f"decoder.up.1.attn.{i}")
    h = _conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), sd, "decoder.up.1.upsample.conv")
    for i in range(2):
        h = _res(h, sd, f"decoder.up.0.block.{i}")
    return _conv(F.silu(_gn(h, sd, "decoder.norm_out")), sd, "decoder.conv_out"), loss


def test_state_dict_uses_taming_names():
    keys = set(VQModel(DD, n_embed=64, embed_dim=8).state_dict())
    missing = [k for k in TAMING_KEYS if k not in keys]
    assert not missing, missing


def test_loads_taming_checkpoint_and_matches_taming_forward(tmp_path):
    sd = _taming_state_dict()
    sd_with_loss = dict(sd, **{"loss.discriminator.main.0.weight": torch.zeros(64, 3, 4, 4)})
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": sd_with_loss, "global_step": 7}, path)
    model = VQModel(DD, n_embed=64, embed_dim=8, ckpt_path=str(path)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        recon, qloss = model(x)
        ref_recon, ref_loss = _taming_forward(sd, x)
    torch.testing.assert_close(recon, ref_recon, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(qloss, ref_loss, rtol=1e-4, atol=1e-6)


def test_adapter_contract_and_decode_code():
    model = VQModel(DD, n_embed=64, embed_dim=8).eval()
    x = torch.randn(3, 3, 16, 16)
    vq_loss, recon, perplexity, indices = model.vq_forward(x)
    assert vq_loss.dim() == 0 and perplexity.dim() == 0
    assert recon.shape == x.shape and indices.shape == (3, 8, 8) and indices.dtype == torch.int64
    with torch.no_grad():
        torch.testing.assert_close(model.decode_code(indices), recon)


def test_emavq_codebook_not_in_ae_parameters():
    model = EMAVQ(DD, n_embed=64, embed_dim=8)
    ae = {id(p) for p in model.ae_parameters()}
    assert all(id(t) not in ae for t in model.quantize.parameters())
    assert "quantize.embedding.weight" in model.state_dict()
    before = model.quantize.embedding.weight.clone()
    model.train().vq_forward(torch.randn(2, 3, 16, 16))
    assert not torch.equal(before, model.quantize.embedding.weight)  # EMA update happened


def test_double_z_rejected():
    import pytest
    with pytest.raises(ValueError, match="double_z"):
        VQModel(dict(DD, double_z=True), n_embed=8, embed_dim=8)
