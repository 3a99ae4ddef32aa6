"""Turn video files into the frame folders ``VideoClipLoader`` reads (needs PyAV: ``pip install av``).

    python -m vqfast.io.extract_frames VIDEO_OR_DIR [...] --out FRAMES_ROOT [--every N] [--max-frames M]
        [--size SHORTER_SIDE] [--format jpg|png] [--quality Q]

Each video ``name.ext`` becomes ``FRAMES_ROOT/name/000000.jpg, 000001.jpg, ...`` in decode
(presentation) order. ``--size`` pre-scales so the shorter side has that many pixels (keeps
folders small; the loader's cover-resize then does little work). This is the path for users
whose build has no ``video`` feature: the Rust loader reads frame folders.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence

logger = logging.getLogger("vqfast")

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".ts")


def find_videos(inputs: Sequence[str]) -> List[str]:
    out: List[str] = []
    for p in inputs:
        if os.path.isdir(p):
            out.extend(sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(VIDEO_EXTS)))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise FileNotFoundError(f"no such video or directory: {p!r}")
    return out


def extract(video: str, out_root: str, *, every: int = 1, max_frames: Optional[int] = None,
            size: Optional[int] = None, fmt: str = "jpg", quality: int = 95) -> int:
    """Write the frames of one video; returns the number written."""
    try:
        import av
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("extract_frames needs PyAV: pip install av") from e
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if fmt not in ("jpg", "png"):
        raise ValueError(f"format must be 'jpg' or 'png', got {fmt!r}")
    name = os.path.splitext(os.path.basename(video))[0]
    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    written = 0
    with av.open(video) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # full sequential decode: frame threading is safe here
        for i, frame in enumerate(container.decode(stream)):
            if i % every:
                continue
            img = frame.to_image()  # PIL RGB
            if size:
                w, h = img.size
                s = size / min(w, h)
                img = img.resize((max(1, round(w * s)), max(1, round(h * s))))
            path = os.path.join(out_dir, f"{written:06d}.{fmt}")
            if fmt == "jpg":
                img.save(path, quality=quality)
            else:
                img.save(path)
            written += 1
            if max_frames is not None and written >= max_frames:
                break
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vqfast.io.extract_frames", description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="video files or directories of videos")
    ap.add_argument("--out", required=True, help="root folder: one sub-folder of frames per video")
    ap.add_argument("--every", type=int, default=1, help="keep every N-th frame")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--size", type=int, default=None, help="scale so the shorter side has this many pixels")
    ap.add_argument("--format", choices=["jpg", "png"], default="jpg")
    ap.add_argument("--quality", type=int, default=95)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    videos = find_videos(args.inputs)
    for v in videos:
        n = extract(v, args.out, every=args.every, max_frames=args.max_frames, size=args.size, fmt=args.format,
                    quality=args.quality)
        logger.info("%s: %d frames", v, n)
    print(f"extracted {len(videos)} video(s) into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
