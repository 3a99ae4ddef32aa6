"""Bounded fuzz of the Rust frame decoder (seconds): mutated JPEG/PNG frames either decode or raise
FrameDecodeError naming the file — never a panic, an abort, a hang or an InternalLoaderError."""
import io
import os
import random
import time

import numpy as np
import pytest
from PIL import Image

from vqfast.io import FrameDecodeError, InternalLoaderError, LoaderError, VideoClipLoader

BUDGET_S = float(os.environ.get("VQFAST_FUZZ_SECONDS", "4"))


def encoded(ext: str) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG" if ext == "jpg" else "PNG")
    return buf.getvalue()


def mutate(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    kind = rnd.randrange(4)
    if kind == 0:                                   # flip bytes
        for _ in range(rnd.randint(1, 16)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
    elif kind == 1:                                 # truncate
        b = b[: rnd.randrange(len(b))]
    elif kind == 2:                                 # splice random bytes
        at = rnd.randrange(len(b))
        b[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 64)))
    else:                                           # keep the magic, scramble the rest
        head = 8 if data[:4] == b"\x89PNG" else 2
        b = b[:head] + bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 200)))
    return bytes(b)


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_mutated_frames_decode_or_raise_named_error(tmp_path, ext):
    good = encoded(ext)
    rnd = random.Random(1234)
    video = tmp_path / "root" / "v0"
    video.mkdir(parents=True)
    (video / f"frame0.{ext}").write_bytes(good)
    target = video / f"frame1.{ext}"
    deadline = time.monotonic() + BUDGET_S
    cases = decoded = 0
    while time.monotonic() < deadline:
        target.write_bytes(mutate(good, rnd))
        loader = VideoClipLoader(str(tmp_path / "root"), clip_len=2, size=(16, 16), batch_size=1, num_threads=1,
                                 shuffle=False)
        try:
            frames, _ = next(iter(loader))
            assert tuple(frames.shape) == (1, 2, 16, 16, 3)
            decoded += 1
        except InternalLoaderError as exc:              # a Rust panic surfaced: a bug
            pytest.fail(f"decoder panicked on case {cases}: {exc}")
        except FrameDecodeError as exc:
            assert target.name in str(exc), str(exc)
        except LoaderError as exc:
            assert target.name in str(exc) or "frame" in str(exc), str(exc)
        finally:
            loader.close()
        cases += 1
    assert cases >= 20, f"only {cases} fuzz cases ran in {BUDGET_S}s"
