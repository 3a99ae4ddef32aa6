"""Evaluation data: the training loaders' pixels (``preprocess="train"``), ADM's ImageNet centre crop, every frame of
video folders, rank shards covering every image once."""
import numpy as np
import pytest
import torch
from eval_helpers import write_images
from PIL import Image

from vqfast.data.synthetic import make_video_folders
from vqfast.errors import DataNotFoundError
from vqfast.eval.data import center_crop_arr, iterate_batches, list_eval_images, load_eval_image
from vqfast.eval.metrics import EvalError
from vqfast.loaders.clips import PyVideoClipLoader


def test_train_preprocessing_equals_the_training_loader(tmp_path):
    write_images(tmp_path / "img", 5, 40, seed=3)
    for i in range(5):  # non-square sources: cover resize + centre crop
        Image.open(tmp_path / "img" / f"{i:05d}.png").resize((40 + 7 * i, 40)).save(tmp_path / "img" / f"{i:05d}.png")
    ours = torch.cat(list(iterate_batches(list_eval_images(tmp_path / "img"), size=24, batch_size=2)))
    loader = PyVideoClipLoader(tmp_path / "img", clip_len=1, size=24, batch_size=5, shuffle=False, images=True,
                               crop="center", drop_last=False)
    loader.set_epoch(0)
    frames, paths = next(iter(loader))  # (B, 1, H, W, C)
    assert [p.split("/")[-1] for p in paths] == [f"{i:05d}.png" for i in range(5)]
    torch.testing.assert_close(ours, frames[:, 0].permute(0, 3, 1, 2), rtol=0, atol=0)


def test_imagenet_center_crop_follows_adm(tmp_path):
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 256, (512, 768, 3), dtype=np.uint8))
    out = center_crop_arr(big, 256)  # min side 512 ≥ 2·256: one BOX halving to 384×256, no bicubic change
    half = np.asarray(big.resize((384, 256), resample=Image.BOX))
    np.testing.assert_array_equal(out, half[:, 64:320])
    small = Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8))
    out = center_crop_arr(small, 256)  # no halving; bicubic short side 200 → 256 (384 long side), centre crop
    ref = np.asarray(small.resize((256, 384), resample=Image.BICUBIC))[64:320]
    np.testing.assert_array_equal(out, ref)
    small.save(tmp_path / "a.png")
    assert load_eval_image(str(tmp_path / "a.png"), 256, "imagenet").shape == (256, 256, 3)


def test_video_folders_are_evaluated_frame_by_frame_and_shards_cover_once(tmp_path):
    root = make_video_folders(tmp_path / "v", num_videos=3, num_frames=5, size=16, seed=0)
    paths = list_eval_images(root)
    assert len(paths) == 15 and len(list_eval_images(root, limit=4)) == 4
    shards = [torch.cat(list(iterate_batches(paths, size=16, batch_size=4, rank=r, world_size=3))) for r in range(3)]
    assert sum(s.shape[0] for s in shards) == 15
    whole = torch.cat(list(iterate_batches(paths, size=16, batch_size=4)))
    torch.testing.assert_close(torch.cat([whole[r::3] for r in range(3)]), torch.cat(shards))


def test_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="not a directory"):
        list_eval_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="no images"):
        list_eval_images(tmp_path / "empty")
    with pytest.raises(EvalError, match="preprocess"):
        next(iterate_batches(["x.png"], size=8, batch_size=1, preprocess="bilinear"))
