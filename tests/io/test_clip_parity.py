"""vqfast.loaders.clips.PyVideoClipLoader is the exact reference of vqfast.io.VideoClipLoader.

Same discovery, plan (len, epoch_plan, clip starts, crops), frames (PNG: byte-identical, resized or not; JPEG:
decoder differences only), state_dict / resume across the two, skip rule and error classes.
"""
from __future__ import annotations

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vqfast.errors import DataNotFoundError, FrameDecodeError, SchemaError, ShardNotFoundError
from vqfast.io import VideoClipLoader
from vqfast.loaders.clips import PyVideoClipLoader, cover_size, frame_key, resize_crop
from vqfast.loaders.plan import MAX_REPLACEMENTS

COUNTS = [9, 4, 13, 7, 1, 11, 6]  # frames per video (video_04 is too short for most clips)
FRAME_HW = (13, 21)               # odd sizes on purpose


def write_noise_videos(root, counts=COUNTS, hw=FRAME_HW, seed=0, ext="png"):
    """One folder per video of random-noise frames named ``f{i}.{ext}`` (unpadded: the order must be numeric)."""
    rng = np.random.default_rng(seed)
    dirs = []
    for v, n in enumerate(counts):
        d = os.path.join(root, f"video_{v:02d}")
        os.makedirs(d)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(os.path.join(d, f"f{i}.{ext}"),
                                                                                   quality=95)
        dirs.append(d)
    with open(os.path.join(root, "README.txt"), "w") as f:  # not a video
        f.write("x")
    os.makedirs(os.path.join(root, "empty_folder"))             # no frames: not a video, not "too short"
    return dirs


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("clip_parity") / "videos")
    write_noise_videos(root)
    return root


def pair(root, **kw):
    return VideoClipLoader(root, num_threads=2, **kw), PyVideoClipLoader(root, **kw)


def run(loader):
    return [(frames.numpy().copy(), list(paths)) for frames, paths in loader]


def assert_same_batches(a, b, *, exact=True, tol=None):
    assert len(a) == len(b)
    for (fa, pa), (fb, pb) in zip(a, b, strict=True):
        assert pa == pb
        assert fa.shape == fb.shape and fa.dtype == fb.dtype == np.uint8
        if exact:
            assert np.array_equal(fa, fb)
        else:
            diff = np.abs(fa.astype(int) - fb.astype(int))
            assert diff.mean() <= tol[0] and diff.max() <= tol[1], (diff.mean(), diff.max())


# ---- discovery and plan ---------------------------------------------------------------------------------------
def test_same_signature():
    rust = dict(inspect.signature(VideoClipLoader).parameters)
    ref = dict(inspect.signature(PyVideoClipLoader).parameters)
    assert list(rust) == list(ref)
    for name in rust:
        assert (rust[name].kind, rust[name].default) == (ref[name].kind, ref[name].default), name


def test_same_videos_frames_and_too_short(videos):
    r, p = pair(videos, clip_len=3, frame_stride=3, size=FRAME_HW, batch_size=2)
    assert r.video_paths == p.video_paths == [os.path.join(videos, f"video_{v:02d}") for v in (0, 2, 3, 5)]
    assert r.frame_counts == p.frame_counts == [9, 13, 7, 11]
    assert sorted(r.too_short) == sorted(p.too_short) == [os.path.join(videos, f"video_{v:02d}") for v in (1, 4, 6)]
    assert dict(r.epoch_plan()) == dict(p.epoch_plan())  # same first frame of each video's clip
    assert all(0 <= start <= n - 7 for (_, start), n in zip(sorted(p.epoch_plan()), p.frame_counts, strict=True))


def test_frame_key_matches_rust_rule():
    names = ["f10.png", "f2.png", "a.png", "x_3_b.jpg", "01.png", "1.png", "1.jpg", "99999999999999999999999.png"]
    assert sorted(names, key=frame_key) == ["01.png", "1.jpg", "1.png", "f2.png", "x_3_b.jpg", "f10.png",
                                            "99999999999999999999999.png", "a.png"]


@pytest.mark.parametrize("clip_len,stride", [(1, 1), (3, 2), (4, 1)])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_same_plan_len_and_state(videos, clip_len, stride, world_size):
    for drop_last in (True, False):
        for shuffle in (True, False):
            for batch_size in (1, 2, 3):
                for rank in range(world_size):
                    kw = dict(clip_len=clip_len, frame_stride=stride, size=8, batch_size=batch_size,
                              shuffle=shuffle, seed=5, rank=rank, world_size=world_size, drop_last=drop_last)
                    r, p = pair(videos, **kw)
                    assert len(r) == len(p)
                    assert r.state_dict() == p.state_dict()
                    for epoch in range(3):
                        assert r.epoch_plan(epoch) == p.epoch_plan(epoch)
                    r.close()
    # the plan really changes with the epoch and covers every usable video over the ranks
    r = VideoClipLoader(videos, clip_len=clip_len, frame_stride=stride, size=8, batch_size=1, seed=5, num_threads=1)
    assert r.epoch_plan(0) != r.epoch_plan(1) or len(r.video_paths) < 3


# ---- frames -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,crop", [(FRAME_HW, "center"), ((9, 9), "center"), ((9, 15), "random"),
                                       ((20, 30), "random"), ((13, 13), "random")])
def test_same_frames_png_exact(videos, size, crop):
    for world_size, rank in [(1, 0), (2, 1)]:
        r, p = pair(videos, clip_len=3, frame_stride=2, size=size, batch_size=2, crop=crop, seed=3, rank=rank,
                    world_size=world_size, drop_last=False)
        for epoch in (0, 1):
            r.set_epoch(epoch)
            p.set_epoch(epoch)
            a, b = run(r), run(p)
            assert len(a) == len(r) > 0
            assert_same_batches(a, b)  # PNG: byte-identical whether resized or not
        r.close()


def test_resize_is_the_rust_filter_not_pil():
    # the reference's resize equals PIL bilinear closely (same filter family) but is its own exact port
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    rh, rw = cover_size(37, 53, 16, 16)
    assert (rh, rw) == (16, 23)
    ours = resize_crop(img, 16, 16, 0, (rw - 16) // 2)
    pil = np.asarray(Image.fromarray(img).resize((rw, rh), Image.BILINEAR))[:, 3:19]
    diff = np.abs(ours.astype(int) - pil.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.5


def test_resize_bit_identical_over_many_sizes(tmp_path):
    # images mode: every image its own size; up- and down-scaling, both axes, random crops
    rng = np.random.default_rng(7)
    for i in range(48):
        hw = tuple(int(v) for v in rng.integers(3, 90, 2))
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    for size in [(17, 23), (32, 8), (5, 5)]:
        r, p = pair(str(tmp_path), images=True, clip_len=1, size=size, batch_size=8, crop="random", seed=11)
        assert_same_batches(run(r), run(p))
        r.close()


@pytest.mark.parametrize("content,tol", [("smooth", (0.5, 4)), ("noise", (1.5, 32))])
def test_jpeg_frames_within_decoder_tolerance(tmp_path, content, tol):
    """zune-jpeg (Rust) vs libjpeg-turbo (PIL) decode the same file with slightly different IDCT / chroma
    upsampling rounding: smooth frames differ by <= 4 levels (mean < 0.5), 4:2:0 noise by <= 32 (mean < 1.5)."""
    root = str(tmp_path / "jpg")
    if content == "noise":
        write_noise_videos(root, counts=[5, 6], hw=(16, 24), ext="jpg")
    else:
        yy, xx = np.mgrid[0:48, 0:64]
        for v in range(2):
            os.makedirs(os.path.join(root, f"v{v}"))
            for i in range(4):
                img = np.stack([(xx * 4 + i) % 256, (yy * 5 + v) % 256, ((xx + yy) * 2) % 256], -1).astype(np.uint8)
                Image.fromarray(img).save(os.path.join(root, f"v{v}", f"{i}.jpg"), quality=90)
    for size in [None, (12, 20)]:  # no resize, and resized
        kw = dict(clip_len=2, batch_size=2, shuffle=False)
        r, p = pair(root, size=size or (16, 24) if content == "noise" else size or (48, 64), **kw)
        assert_same_batches(run(r), run(p), exact=False, tol=tol)
        r.close()


# ---- images mode ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("img_parity")
    rng = np.random.default_rng(2)
    for i, hw in enumerate([(10, 12), (17, 9), (12, 12), (31, 20), (8, 8), (11, 13), (14, 15)]):
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(root / f"img{i * 7 % 10}_{i}.png")
    os.makedirs(root / "subfolder")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "subfolder" / "ignored.png")
    (root / "notes.txt").write_text("x")
    return str(root)


@pytest.mark.parametrize("clip_len", [1, 3])
def test_images_mode_same_batches(images, clip_len):
    for world_size, rank, drop_last in [(1, 0, True), (2, 0, False), (3, 2, False)]:
        r, p = pair(images, images=True, clip_len=clip_len, frame_stride=5, size=(8, 10), batch_size=2,
                    crop="random", seed=1, rank=rank, world_size=world_size, drop_last=drop_last)
        assert r.video_paths == p.video_paths and len(r.video_paths) == 7
        assert r.frame_counts == p.frame_counts == [1] * 7
        assert len(r) == len(p) and r.state_dict() == p.state_dict()
        for epoch in (0, 2):
            r.set_epoch(epoch)
            p.set_epoch(epoch)
            assert r.epoch_plan() == p.epoch_plan() and all(s == 0 for _, s in p.epoch_plan())
            a, b = run(r), run(p)
            assert_same_batches(a, b)
            for frames, _ in a:  # every slot holds the same image
                assert (frames == frames[:, :1]).all()
        r.close()
    # a position of another clip_len (or seed) does not resume
    state = VideoClipLoader(images, images=True, clip_len=1, size=8, batch_size=1, seed=1).state_dict()
    PyVideoClipLoader(images, images=True, clip_len=1, size=8, batch_size=1, seed=1).load_state_dict(state)
    for kw in (dict(clip_len=2, seed=1), dict(clip_len=1, seed=2)):
        with pytest.raises(SchemaError):
            PyVideoClipLoader(images, images=True, size=8, batch_size=1, **kw).load_state_dict(state)


# ---- resume across the two ------------------------------------------------------------------------------------
def test_resume_position_is_interchangeable(videos):
    kw = dict(clip_len=2, frame_stride=2, size=(9, 9), batch_size=1, seed=4, crop="random")
    r, p = pair(videos, **kw)
    r.set_epoch(2)
    full = run(r)
    assert len(full) == 6  # the videos with at least 3 frames
    for first, second in [(r, PyVideoClipLoader(videos, **kw)), (p, VideoClipLoader(videos, num_threads=1, **kw))]:
        first.set_epoch(2)
        it = iter(first)
        head = [(f.numpy().copy(), ps) for f, ps in (next(it), next(it))]
        state = first.state_dict()
        assert state["epoch"] == 2 and state["batch"] == 2
        second.load_state_dict(state)
        assert second.state_dict() == state
        assert_same_batches(head + run(second), full)
        first.close()
    r.close()


# ---- skip rule and errors ---------------------------------------------------------------------------------------
def _corrupt(path):
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n garbage")


def test_skip_rule_same_replacements_errors_and_frames(tmp_path):
    root = str(tmp_path / "bad")
    dirs = write_noise_videos(root, counts=[3, 3, 3, 3, 3, 3, 3], hw=(6, 8))
    _corrupt(os.path.join(dirs[2], "f1.png"))  # in every clip of video 2 (clip_len 3 = whole video)
    _corrupt(os.path.join(dirs[5], "f0.png"))
    os.remove(os.path.join(dirs[6], "f2.png"))  # video 6 now has 2 frames: too short
    for world_size in (1, 2):
        for epoch in range(3):
            kw = dict(clip_len=3, size=(6, 8), batch_size=2, seed=epoch, world_size=world_size, rank=world_size - 1,
                      drop_last=False, on_error="skip")
            r, p = pair(root, **kw)
            assert r.too_short == p.too_short == [dirs[6]]
            r.set_epoch(epoch)
            p.set_epoch(epoch)
            a, b = run(r), run(p)
            assert_same_batches(a, b)
            assert len(r.errors) == len(p.errors)
            for er, ep in zip(r.errors, p.errors, strict=True):
                assert er.split(":")[0] == ep.split(":")[0]  # same file, first in the message
                assert er.split(":")[0].endswith(("video_02/f1.png", "video_05/f0.png"))
            plan = p.epoch_plan()
            bad = {dirs[2], dirs[5]}
            wanted = sum(1 for v, _ in plan if v in bad)
            assert len(p.errors) >= wanted  # a replacement can be bad too
            for _, paths in b:
                assert not bad & set(paths)
            r.close()


def test_skip_rule_is_the_documented_one(tmp_path):
    # one bad video, batch_size 2, no shuffle: order v0..v5; the bad v1 in batch 0 is replaced by v2
    # (the first sample after the batch), the bad v5 in the last batch by v0 (wrap-around)
    root = str(tmp_path / "rule")
    dirs = write_noise_videos(root, counts=[2] * 6, hw=(4, 4))
    _corrupt(os.path.join(dirs[1], "f0.png"))
    _corrupt(os.path.join(dirs[5], "f1.png"))
    for loader in pair(root, clip_len=2, size=4, batch_size=2, shuffle=False, on_error="skip"):
        got = [paths for _, paths in loader]
        assert got == [[dirs[0], dirs[2]], [dirs[2], dirs[3]], [dirs[4], dirs[0]]]
        assert len(loader.errors) == 2


def test_raise_mode_same_error_class_and_message_start(tmp_path):
    root = str(tmp_path / "raise")
    dirs = write_noise_videos(root, counts=[3, 3, 3], hw=(6, 8))
    bad = os.path.join(dirs[1], "f2.png")
    _corrupt(bad)
    for loader in pair(root, clip_len=3, size=(6, 8), batch_size=3):
        with pytest.raises(FrameDecodeError) as info:
            list(loader)
        assert str(info.value).startswith(bad + ": ")
        assert info.value.path == bad and info.value.kind == "decode"
    # a frame that vanished after the scan: ShardNotFoundError (also a FileNotFoundError) on both
    loaders = pair(root, clip_len=3, size=(6, 8), batch_size=3, on_error="raise")
    gone = os.path.join(dirs[0], "f1.png")
    os.remove(gone)
    for loader in loaders:
        with pytest.raises(ShardNotFoundError) as info:
            list(loader)
        assert str(info.value).startswith(gone + ": ") and isinstance(info.value, FileNotFoundError)
    # a frame of another size inside a clip: FrameDecodeError on both
    root2 = str(tmp_path / "odd")
    dirs = write_noise_videos(root2, counts=[3, 3], hw=(6, 8))
    odd = os.path.join(dirs[1], "f1.png")
    Image.fromarray(np.zeros((7, 8, 3), np.uint8)).save(odd)
    for loader in pair(root2, clip_len=3, size=(6, 8), batch_size=1, shuffle=False, on_error="skip"):
        got = [paths for _, paths in loader]
        assert got == [[dirs[0]], [dirs[0]]]
        assert len(loader.errors) == 1 and loader.errors[0].startswith(odd + ": frame is 8x7 but earlier frames")


def test_give_up_when_no_readable_replacement(tmp_path):
    root = str(tmp_path / "allbad")
    dirs = write_noise_videos(root, counts=[1] * 3, hw=(4, 4))
    for d in dirs:
        _corrupt(os.path.join(d, "f0.png"))
    messages = []
    # 3 samples in the rank's plan: 3 replacements allowed, the 4th failure ends the batch
    for loader in pair(root, clip_len=1, size=4, batch_size=1, on_error="skip"):
        with pytest.raises(FrameDecodeError) as info:
            list(loader)
        msg = str(info.value)
        assert msg.startswith(f"{root}: cannot fill batch 0: 4 clip(s) failed to load, and so did all 3 "
                              "replacement(s) allowed")
        assert "last errors:" in msg and "f0.png" in msg
        messages.append(msg.split("; last errors")[0])
        assert loader.errors == []  # the failed batch was not delivered
    assert messages[0] == messages[1]
    assert MAX_REPLACEMENTS == 64


# ---- arguments --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,exc", [
    (dict(clip_len=0), ValueError), (dict(frame_stride=0), ValueError), (dict(size=(8,)), ValueError),
    (dict(size=0), ValueError), (dict(batch_size=0), ValueError), (dict(crop="left"), ValueError),
    (dict(on_error="ignore"), ValueError), (dict(timeout_s=0), ValueError), (dict(timeout_s=float("nan")), ValueError),
    (dict(rank=2, world_size=2), ValueError), (dict(seed=-1), ValueError), (dict(seed=2 ** 64), ValueError),
    (dict(clip_len=50), DataNotFoundError),
])
def test_same_argument_errors(videos, bad, exc):
    kw = {**dict(size=8, batch_size=1, clip_len=2), **bad}
    got = []
    for cls in (VideoClipLoader, PyVideoClipLoader):
        with pytest.raises(exc) as info:
            cls(videos, **kw)
        got.append((type(info.value), str(info.value)))
    assert got[0] == got[1]


def test_missing_or_empty_root(tmp_path):
    for cls in (VideoClipLoader, PyVideoClipLoader):
        with pytest.raises(DataNotFoundError, match="root must be a directory"):
            cls(str(tmp_path / "nope"), clip_len=1, size=8, batch_size=1)
        with pytest.raises(FileNotFoundError, match="no usable image"):
            cls(str(tmp_path), images=True, clip_len=1, size=8, batch_size=1)


def test_reference_works_without_the_extension(videos, tmp_path):
    code = f"""
import sys
sys.modules["vqfast._io"] = None  # importing the extension now fails
import vqfast.loaders.clips as c, vqfast.data.latents as l
assert "vqfast.io" not in sys.modules
loader = c.PyVideoClipLoader({videos!r}, clip_len=2, size=8, batch_size=2)
frames, paths = next(iter(loader))
assert tuple(frames.shape) == (2, 2, 8, 8, 3)
paths = l.make_latent_shards({str(tmp_path / 'lat')!r}, per_domain=4, shards_per_domain=1, resolution=4)
lat = l.TorchLatentShardLoader(paths, label_key="labels", batch_size=2)
assert len(list(lat)) == 4
try:
    import vqfast.io
except ImportError:
    pass
else:
    raise SystemExit("vqfast.io imported without the extension")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
