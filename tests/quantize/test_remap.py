"""taming's remap / unknown_index (VectorQuantizer2.remap_to_used / unmap_to_all) on vqfast's quantizers."""
import numpy as np
import pytest
import torch

from vqfast.errors import CheckpointNotFoundError, InputError
from vqfast.quantize import EMAVectorQuantizer, VectorQuantizer
from vqfast.quantize.remap import load_used, remap_to_used, unmap_to_all


def taming_remap_to_used(inds, used, unknown_index, re_embed):
    """taming VectorQuantizer2.remap_to_used as written."""
    ishape = inds.shape
    inds = inds.reshape(ishape[0], -1)
    used = used.to(inds)
    match = (inds[:, :, None] == used[None, None, ...]).long()
    new = match.argmax(-1)
    unknown = match.sum(2) < 1
    if unknown_index == "random":
        new[unknown] = torch.randint(0, re_embed, size=new[unknown].shape)
    else:
        new[unknown] = unknown_index
    return new.reshape(ishape)


def taming_unmap_to_all(inds, used, re_embed):
    ishape = inds.shape
    inds = inds.reshape(ishape[0], -1).clone()
    used = used.to(inds)
    if re_embed > used.shape[0]:
        inds[inds >= used.shape[0]] = 0
    back = torch.gather(used[None, :][inds.shape[0] * [0], :], 1, inds)
    return back.reshape(ishape)


@pytest.mark.parametrize("unknown", ["extra", 2])
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_remap_and_unmap_equal_taming(unknown, n):
    g = torch.Generator().manual_seed(n)
    used = torch.randperm(64, generator=g)[:max(3, n % 40)]
    inds = torch.randint(0, 64, (2, n), generator=g)
    re_embed = len(used) + (unknown == "extra")
    code = len(used) if unknown == "extra" else unknown
    got = remap_to_used(inds, used, code, re_embed)
    torch.testing.assert_close(got, taming_remap_to_used(inds, used, code, re_embed), rtol=0, atol=0)
    torch.testing.assert_close(unmap_to_all(got, used), taming_unmap_to_all(got, used, re_embed), rtol=0, atol=0)
    known = (inds[..., None] == used).any(-1)
    assert torch.equal(unmap_to_all(got, used)[known], inds[known])  # known codes round-trip


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_quantizer_returns_codes_in_the_reduced_vocabulary(tmp_path, cls):
    torch.manual_seed(0)
    q = cls(16, 4, backend="torch")
    z = torch.randn(2, 4, 3, 3)
    _, _, (_, _, plain) = q.eval()(z)
    used = torch.tensor([int(plain[0]), 5, 9, int(plain[-1])]).unique()
    np.save(tmp_path / "used.npy", used.numpy())
    q.set_remap(load_used(tmp_path / "used.npy"), "extra")
    zq, loss, (_, _, idx) = q(z)
    assert idx.max() <= len(used) and int(idx[0]) == int((used == plain[0]).nonzero())
    assert "used" in q.state_dict() and q.re_embed == len(used) + 1
    back = q.get_codebook_entry(idx, shape=(2, 3, 3, 4))  # unmapped: known codes give their own vectors
    known = (plain[:, None] == used).any(-1).view(2, 3, 3)
    torch.testing.assert_close(back.permute(0, 2, 3, 1)[known], zq.permute(0, 2, 3, 1)[known])
    q2 = cls(16, 4, backend="torch")
    q2.set_remap(torch.zeros(len(used), dtype=torch.long), "random")
    q2.load_state_dict(q.state_dict())  # taming checkpoints trained with remap hold `used`
    assert torch.equal(q2.used, q.used)
    _, _, (_, _, rnd) = q2(z)
    assert rnd.max() < len(used)


def test_remap_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="remap file"):
        load_used(tmp_path / "none.npy")
    np.save(tmp_path / "f.npy", np.zeros((2, 2)))
    with pytest.raises(InputError, match="1-D integer array"):
        load_used(tmp_path / "f.npy")
    with pytest.raises(InputError, match="unknown_index"):
        VectorQuantizer(8, 2).set_remap(torch.arange(3), 5)
