"""extract_frames (PyAV) → frame folders → VideoClipLoader, end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from vqfast.io import VideoClipLoader  # noqa: E402
from vqfast.io.extract_frames import main  # noqa: E402


def write_video(path: str, n: int, h: int = 48, w: int = 64) -> None:
    with av.open(path, "w") as c:
        s = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"g": "8", "bf": "0"} if "libx264" in av.codecs_available else {}
        for i in range(n):
            img = np.full((h, w, 3), i * 9 % 256, np.uint8)  # frame i encodes its index
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_extract_then_load(tmp_path):
    vids = tmp_path / "videos"
    vids.mkdir()
    for k in range(2):
        write_video(str(vids / f"clip{k}.mp4"), 20)
    out = tmp_path / "frames"
    assert main([str(vids), "--out", str(out), "--format", "png"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip0", "clip1"]
    assert len(list((out / "clip0").iterdir())) == 20
    loader = VideoClipLoader(str(out), clip_len=4, frame_stride=2, size=(48, 64), batch_size=2, num_threads=1)
    frames, paths = next(iter(loader))
    ids = torch.round(frames[..., 0].float().mean(dim=(-1, -2)) / 9)  # (B, T)
    assert torch.all(ids[:, 1:] - ids[:, :-1] == 2)
