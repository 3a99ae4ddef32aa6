"""VideoClipLoader on video files (cargo feature `video`): frames picked by timestamp, exact.

Fixtures are H.264 files written with PyAV in which frame i is a flat grey level 9 * i, so the
decoded clip tells which frames it holds. Skipped when the extension has no `video` feature or
PyAV is missing.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import vqfast._io as native
from vqfast.io import FrameDecodeError, VideoClipLoader

av = pytest.importorskip("av")
pytestmark = pytest.mark.skipif(not getattr(native, "HAS_VIDEO", False), reason="built without the `video` feature")


def write_video(path: str, n: int, *, gop: int, bframes: int, h: int = 48, w: int = 64) -> None:
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"g": str(gop), "bf": str(bframes), "crf": "10"}
        for i in range(n):
            img = np.full((h, w, 3), i * 9 % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def frame_ids(frames: torch.Tensor) -> torch.Tensor:
    return torch.round(frames[..., 0].float().mean(dim=(-1, -2)) / 9).long()  # (B, T)


@pytest.mark.parametrize("gop,bframes", [(1, 0), (8, 0), (12, 2), (250, 3)])
def test_clips_are_exact_frames_at_stride(tmp_path, gop, bframes):
    counts = [25, 17, 28]
    for k, n in enumerate(counts):
        write_video(str(tmp_path / f"v{k}.mp4"), n, gop=gop, bframes=bframes)
    loader = VideoClipLoader(str(tmp_path), clip_len=4, frame_stride=3, size=(48, 64), batch_size=3, num_threads=2)
    assert loader.frame_counts == counts
    for epoch in range(3):
        loader.set_epoch(epoch)
        plan = loader.epoch_plan()
        frames, paths = next(iter(loader))
        ids = frame_ids(frames)
        for clip, path, (ppath, start) in zip(ids, paths, plan, strict=True):
            assert path == ppath
            assert clip.tolist() == [start + 3 * t for t in range(4)], (gop, bframes, path)
            assert clip[-1] < counts[int(os.path.basename(path)[1])]


def test_frame_folders_and_files_together_and_bad_file(tmp_path):
    write_video(str(tmp_path / "a.mp4"), 10, gop=5, bframes=0)
    (tmp_path / "b.mkv").write_bytes(b"not a video at all")
    with pytest.raises(FrameDecodeError, match="b.mkv"):
        VideoClipLoader(str(tmp_path), clip_len=2, size=16, batch_size=1)
    os.remove(tmp_path / "b.mkv")
    folder = tmp_path / "c"
    folder.mkdir()
    from PIL import Image

    for i in range(6):
        Image.fromarray(np.full((48, 64, 3), i * 9, np.uint8)).save(folder / f"{i}.png")
    loader = VideoClipLoader(str(tmp_path), clip_len=3, size=(24, 32), batch_size=2, shuffle=False, num_threads=1)
    frames, paths = next(iter(loader))
    assert sorted(os.path.basename(p) for p in paths) == ["a.mp4", "c"]
    ids = frame_ids(frames)
    assert torch.all(ids[:, 1:] - ids[:, :-1] == 1)
