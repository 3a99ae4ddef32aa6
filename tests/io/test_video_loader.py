"""VideoClipLoader: clips of consecutive frames at the right stride, inside the video, seeded."""
from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
import torch
from iohelpers import write_video_frames
from PIL import Image

from vqfast.io import FrameDecodeError, VideoClipLoader

COUNTS = [9, 20, 13, 40, 6, 17]


def frame_ids(frames: torch.Tensor) -> torch.Tensor:
    """(B, T) frame index decoded from the red channel (frame i has red = 7 i % 256)."""
    red = frames[..., 0].float().mean(dim=(-1, -2))  # (B, T)
    return torch.round(red / 7).long()


@pytest.fixture
def root(tmp_path):
    r = str(tmp_path / "videos")
    write_video_frames(r, COUNTS)
    return r


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_clips_are_consecutive_at_stride_and_inside_video(root, stride):
    clip_len = 3
    loader = VideoClipLoader(root, clip_len=clip_len, frame_stride=stride, size=(24, 32), batch_size=2,
                             drop_last=False, num_threads=2, seed=1)
    span = (clip_len - 1) * stride + 1
    usable = [c for c in COUNTS if c >= span]
    assert len(loader.video_paths) == len(usable)
    for epoch in range(4):
        loader.set_epoch(epoch)
        for frames, paths in loader:
            assert frames.dtype == torch.uint8 and frames.shape[1:] == (clip_len, 24, 32, 3)
            ids = frame_ids(frames)
            assert torch.equal(ids[:, 1:] - ids[:, :-1], torch.full_like(ids[:, 1:], stride))
            for clip, path in zip(ids, paths, strict=True):
                n = COUNTS[int(os.path.basename(path).split("_")[1])]
                assert clip[-1] < n and clip[0] >= 0
                # green channel names the video: the frames come from the reported folder
            assert len(paths) == frames.shape[0]
        plan = loader.epoch_plan()
        for path, start in plan:
            assert start + span <= COUNTS[int(os.path.basename(path).split("_")[1])]


def test_same_size_frames_pass_through_unchanged(root):
    loader = VideoClipLoader(root, clip_len=2, size=(24, 32), batch_size=1, shuffle=False, num_threads=1)
    frames, paths = next(iter(loader))
    start = loader.epoch_plan()[0][1]
    want = np.asarray(Image.open(os.path.join(paths[0], f"frame{start}.png")).convert("RGB"))
    assert np.array_equal(frames[0, 0].numpy(), want)


def test_video_identity_matches_paths(root):
    loader = VideoClipLoader(root, clip_len=2, size=(24, 32), batch_size=3, num_threads=2, drop_last=False)
    for frames, paths in loader:
        green = frames[:, 0, :, :, 1].float().mean(dim=(1, 2)).round().long() // 20
        assert green.tolist() == [int(os.path.basename(p).split("_")[1]) for p in paths]


def test_determinism_and_rank_coverage(root):
    def clips(**kw):
        loader = VideoClipLoader(root, clip_len=4, size=(12, 16), batch_size=2, num_threads=2, seed=9, **kw)
        loader.set_epoch(1)
        return [(p, frame_ids(f)[i, 0].item()) for f, ps in loader for i, p in enumerate(ps)]

    a, b = clips(), clips()
    assert a == b
    per_rank = [clips(rank=r, world_size=2, drop_last=False) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1])
    seen = Counter(p for r in per_rank for p, _ in r)
    assert set(seen) == {p for p, _ in a} | set(seen)  # every usable video appears
    assert len(seen) == len([c for c in COUNTS if c >= 4])


def test_resize_cover_and_crop(tmp_path):
    root = str(tmp_path / "big")
    write_video_frames(root, [5], size=(60, 100))
    for crop in ("center", "random"):
        loader = VideoClipLoader(root, clip_len=3, size=(30, 30), batch_size=1, crop=crop, num_threads=1)
        frames, _ = next(iter(loader))
        assert frames.shape == (1, 3, 30, 30, 3)
        ids = frame_ids(frames)
        assert torch.equal(ids[0, 1:] - ids[0, :-1], torch.ones(2, dtype=torch.long))


def test_resize_matches_pil_bilinear_closely(tmp_path):
    root = tmp_path / "grad"
    d = root / "v"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (8, 12, 3)).astype(np.uint8)
    img = Image.fromarray(base).resize((120, 80), Image.NEAREST)  # smooth blocks, (80, 120)
    img = Image.fromarray(np.asarray(img))
    for i in range(2):
        img.save(d / f"{i}.png")
    loader = VideoClipLoader(str(root), clip_len=1, size=(40, 40), batch_size=1, num_threads=1)
    frames, _ = next(iter(loader))
    # PIL: cover-resize to (40, 60), centre crop 40x40
    ref = np.asarray(img.resize((60, 40), Image.BILINEAR))[:, 10:50]
    diff = np.abs(frames[0, 0].numpy().astype(int) - ref.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 3


def test_jpeg_frames(tmp_path):
    root = str(tmp_path / "jpg")
    write_video_frames(root, [8, 8], ext="jpg")
    loader = VideoClipLoader(root, clip_len=4, frame_stride=2, size=(24, 32), batch_size=2, num_threads=2)
    frames, _ = next(iter(loader))
    ids = frame_ids(frames)
    assert torch.equal(ids[:, 1:] - ids[:, :-1], torch.full_like(ids[:, 1:], 2))


def test_corrupt_frame_raise_and_skip(tmp_path):
    root = str(tmp_path / "bad")
    dirs = write_video_frames(root, [4, 4, 4])
    with open(os.path.join(dirs[1], "frame2.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n garbage")
    loader = VideoClipLoader(root, clip_len=4, size=(24, 32), batch_size=3, num_threads=1)
    with pytest.raises(FrameDecodeError, match="frame2.png"):
        list(loader)
    skip = VideoClipLoader(root, clip_len=4, size=(24, 32), batch_size=3, num_threads=1, on_error="skip")
    batches = list(skip)
    assert len(batches) == 1 and batches[0][0].shape[0] == 3
    assert len(skip.errors) == 1 and "frame2.png" in skip.errors[0]
    assert dirs[1] not in batches[0][1]


def test_too_short_videos_are_skipped_and_empty_root_errors(tmp_path):
    root = str(tmp_path / "short")
    write_video_frames(root, [3, 10])
    loader = VideoClipLoader(root, clip_len=5, size=8, batch_size=1, num_threads=1)
    assert len(loader.video_paths) == 1
    with pytest.raises(ValueError, match="no usable video"):
        VideoClipLoader(root, clip_len=20, size=8, batch_size=1)
    with pytest.raises(ValueError, match="size"):
        VideoClipLoader(root, clip_len=2, size=(8,), batch_size=1)


def test_resume_and_drop_mid_epoch(root):
    loader = VideoClipLoader(root, clip_len=2, size=(12, 16), batch_size=1, num_threads=2, seed=4)
    full = [p for _, ps in loader for p in ps]
    it = iter(loader)
    head = [next(it)[1][0] for _ in range(2)]
    state = loader.state_dict()
    del it
    loader.close()
    again = VideoClipLoader(root, clip_len=2, size=(12, 16), batch_size=1, num_threads=2, seed=4)
    again.load_state_dict(state)
    assert head + [p for _, ps in again for p in ps] == full


def test_video_files_without_the_feature_point_to_extract_frames(tmp_path):
    import vqfast._io as native

    if native.HAS_VIDEO:
        pytest.skip("built with the `video` feature (tests/io/test_video_files.py covers it)")
    (tmp_path / "a.mp4").write_bytes(b"\x00" * 64)
    from vqfast.io import UnsupportedFormatError

    with pytest.raises(UnsupportedFormatError, match="extract_frames"):
        VideoClipLoader(str(tmp_path), clip_len=2, size=8, batch_size=1)
