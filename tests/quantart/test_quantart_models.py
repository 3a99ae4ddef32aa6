"""BaseVQGAN / SGAModule / StyleTransfer: shapes, freezing, shared GroupNorm, stage-1 checkpoint loading."""
import pytest
import torch
from qa_helpers import EMBED_DIM, N_EMBED

from vqfast.models.quantart import (
    BaseVQGAN,
    GuidedAttention,
    SGAModule,
    Stage1CheckpointError,
    Stage1CheckpointNotFound,
    StyleTransfer,
)


def images(b=2, size=16):
    return torch.rand(b, 3, size, size) * 2 - 1


def stage1(dd, **kw):
    return BaseVQGAN(dd, N_EMBED, EMBED_DIM, backend="torch", **kw)


def stage2(dd, **kw):
    return StyleTransfer(dd, N_EMBED, EMBED_DIM, block_num=2, backend="torch", **kw)


def test_transfer_returns_the_six_tensors(dd):
    m = stage2(dd)
    quant_x, quant_y, quant_ref, diff, idx_y, idx_ref = m.transfer(images(), images())
    for t in (quant_x, quant_y, quant_ref):
        assert t.shape == (2, EMBED_DIM, 8, 8)
    assert diff.dim() == 0 and diff.requires_grad
    assert idx_y.shape == idx_ref.shape == (2, 8, 8) and idx_y.dtype == torch.long
    assert not quant_x.requires_grad and not quant_ref.requires_grad and quant_y.requires_grad
    # output is re-quantised with quantize_dec: every position equals its code
    codes = m.quantize_dec.embedding.weight[idx_y].permute(0, 3, 1, 2)  # (B, D, h, w)
    torch.testing.assert_close(quant_y, codes)
    torch.testing.assert_close(quant_ref, m.quantize_dec.embedding.weight[idx_ref].permute(0, 3, 1, 2))
    assert m(images(), images()).shape == (2, 3, 16, 16)


def test_continuous_variant_skips_output_quantisation(dd):
    m = stage2(dd, variant="continuous")
    x, ref = images(), images()
    quant_x, quant_y, quant_ref, diff, idx_y, idx_ref = m.transfer(x, ref)
    assert idx_y is None and idx_ref is None and float(diff) == 0.0
    with torch.no_grad():
        torch.testing.assert_close(quant_x, m.quant_conv(m.encoder(x)))
        torch.testing.assert_close(quant_ref, m.quant_conv_real(m.encoder_real(ref)))
        torch.testing.assert_close(quant_y, m.model_x2y(quant_x, quant_ref))
    with pytest.raises(ValueError, match="variant='bogus'"):
        stage2(dd, variant="bogus")


def test_gradient_reaches_model_x2y_only(dd):
    m = stage2(dd)
    _, quant_y, _, diff, *_ = m.transfer(images(), images())
    (quant_y.square().mean() + diff).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.model_x2y.parameters())
    for name, module in m.frozen_modules().items():
        assert all(not p.requires_grad and p.grad is None for p in module.parameters()), name
    assert {id(p) for p in m.trainable_parameters()} == {id(p) for p in m.model_x2y.parameters()}
    m.train()
    assert m.model_x2y.training and not m.encoder.training and not m.quantize_dec.training


def test_cross_attention_shares_one_groupnorm_between_query_and_key():
    torch.manual_seed(1)
    att = GuidedAttention(32)
    x, r = torch.randn(2, 32, 4, 4), torch.randn(2, 32, 3, 5)  # reference may differ in size
    xn, rn = att.norm(x), att.norm(r)
    q = att.q(xn).flatten(2)  # (B, C, HW)
    k, v = att.k(rn).flatten(2), att.v(rn).flatten(2)  # (B, C, HrWr)
    w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / 32 ** 0.5, dim=-1)  # (B, HW, HrWr)
    h = torch.einsum("bij,bcj->bci", w, v).reshape(2, 32, 4, 4)
    torch.testing.assert_close(att(x, r), x + att.proj_out(h), atol=1e-5, rtol=1e-5)
    assert sum(isinstance(mod, torch.nn.GroupNorm) for mod in att.modules()) == 1
    att.residual = False
    torch.testing.assert_close(att(x, r), att.proj_out(h), atol=1e-5, rtol=1e-5)


def test_sga_module_names_match_quantart():
    keys = set(SGAModule(32, block_num=2).state_dict())
    for k in ("blocks.0.res_block.conv1.weight", "blocks.1.self_attn_block.q.weight",
              "blocks.1.attn_block.proj_out.weight", "blocks.0.attn_block.norm.weight"):
        assert k in keys
    assert not any("self_attn_block" in k for k in SGAModule(32, 1, use_selfatt=False).state_dict())
    with pytest.raises(ValueError, match="block_num=0"):
        SGAModule(32, 0)


# ---- stage-1 checkpoints ---------------------------------------------------------------------------------------
def test_loads_both_stage1_checkpoints(dd, tmp_path):
    content, style = stage1(dd), stage1(dd)
    torch.save({"state_dict": content.state_dict()}, tmp_path / "content.ckpt")  # Lightning layout
    torch.save(style.state_dict(), tmp_path / "style.pt")  # bare state dict
    m = stage2(dd, checkpoint_encoder=str(tmp_path / "content.ckpt"), checkpoint_decoder=str(tmp_path / "style.pt"))
    pairs = [(m.encoder, content.encoder), (m.quant_conv, content.quant_conv), (m.quantize_enc, content.quantize),
             (m.encoder_real, style.encoder), (m.quant_conv_real, style.quant_conv), (m.quantize_dec, style.quantize),
             (m.decoder, style.decoder), (m.post_quant_conv, style.post_quant_conv)]
    for mine, theirs in pairs:
        for (k, a), b in zip(mine.state_dict().items(), theirs.state_dict().values(), strict=True):
            assert torch.equal(a, b), k
    x = images()
    torch.testing.assert_close(m.encode_content(x), content.encode(x)[0])


def test_missing_keys_are_named(dd, tmp_path):
    sd = stage1(dd).state_dict()
    del sd["decoder.conv_out.weight"], sd["quantize.embedding.weight"]
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(Stage1CheckpointError, match=r"checkpoint_decoder.*partial\.pt.*quantize\.embedding\.weight"):
        stage2(dd, checkpoint_decoder=str(tmp_path / "partial.pt"))
    with pytest.raises(Stage1CheckpointError, match=r"decoder\.conv_out\.weight"):
        StyleTransfer(dd, N_EMBED, EMBED_DIM, block_num=1).load_style_stage1(tmp_path / "partial.pt")
    with pytest.raises(Stage1CheckpointError, match=r"checkpoint_encoder.*lacks \d+ key.*encoder\.conv_in\.weight"):
        torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
        stage2(dd, checkpoint_encoder=str(tmp_path / "other.pt"))


def test_wrong_path_and_wrong_shapes_are_named(dd, tmp_path):
    with pytest.raises(Stage1CheckpointNotFound, match=r"checkpoint_encoder.*nope\.ckpt.*does not exist"):
        stage2(dd, checkpoint_encoder=str(tmp_path / "nope.ckpt"))
    big = BaseVQGAN(dd, N_EMBED * 2, EMBED_DIM, backend="torch")
    torch.save(big.state_dict(), tmp_path / "big.pt")
    with pytest.raises(Stage1CheckpointError, match=r"quantize\.embedding\.weight: checkpoint \(64, 16\)"):
        stage2(dd, checkpoint_decoder=str(tmp_path / "big.pt"))
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Stage1CheckpointError, match="cannot read"):
        stage2(dd, checkpoint_encoder=str(tmp_path / "garbage.pt"))


# ---- stage 1 ---------------------------------------------------------------------------------------------------
def test_base_vqgan_parameter_groups(dd):
    ids = lambda ps: {id(p) for p in ps}
    full = stage1(dd)
    assert ids(full.ae_parameters()) == ids(p for n, p in full.named_parameters())
    frozen = stage1(dd, freeze_decoder=True)
    dec = ids([*frozen.decoder.parameters(), *frozen.post_quant_conv.parameters()])
    assert not dec & ids(frozen.ae_parameters()) and dec == ids(frozen.frozen_parameters())
    noq = stage1(dd, use_quantize=False)
    assert not ids(noq.quantize.parameters()) & ids(noq.ae_parameters())
    vq_loss, recon, _, indices = noq.vq_forward(images())
    assert float(vq_loss) == 0.0 and recon.shape == (2, 3, 16, 16) and indices.shape == (2, 8, 8)
    x = images(1)
    torch.testing.assert_close(noq.encode(x)[0], noq.quant_conv(noq.encoder(x)))


def test_base_vqgan_ckpt_quantize(dd, tmp_path):
    src = stage1(dd)
    torch.nn.init.normal_(src.quantize.embedding.weight)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "q.ckpt")
    m = stage1(dd, freeze_decoder=True, ckpt_quantize=str(tmp_path / "q.ckpt"))
    assert torch.equal(m.quantize.embedding.weight, src.quantize.embedding.weight)
    torch.save({"x": torch.zeros(1)}, tmp_path / "noq.pt")
    with pytest.raises(Stage1CheckpointError, match=r"ckpt_quantize.*quantize\.embedding\.weight"):
        stage1(dd, freeze_decoder=True, ckpt_quantize=str(tmp_path / "noq.pt"))
