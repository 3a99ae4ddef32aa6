"""Video clips from JPEG frame folders: vqfast.io.VideoClipLoader vs DataLoader + PIL.

Providers (same clips: the baseline consumes VideoClipLoader.epoch_plan(); equal thread budget
N = VQFAST_BENCH_IO_THREADS):
  vqfast   VideoClipLoader(num_threads=N): zune-jpeg decode, cover-resize + centre crop in Rust.
  dl_pil   map-style Dataset decoding with PIL (draft mode), the same cover size (bilinear) and
           centre crop, in DataLoader(num_workers=N).
Output check: identical clip list (video, first frame) and pixels within JPEG-decoder tolerance
(libjpeg-turbo vs zune-jpeg differ by a few LSB; both resize with the same bilinear filter).

Sizes (defaults are CI-small): VQFAST_BENCH_IO_VIDEOS (8), VQFAST_BENCH_IO_FRAMES (20),
VQFAST_BENCH_IO_SRC ("240x320" source frames, HxW), VQFAST_BENCH_IO_T (8), VQFAST_BENCH_IO_SIZE (128),
VQFAST_BENCH_IO_CLIP_BATCH (4), VQFAST_BENCH_IO_THREADS (2), VQFAST_BENCH_IO_STEP_MS (0).
The target run (T=16, 256^2, B=8, each provider in a fresh process):
  VQFAST_BENCH_IO_VIDEOS=96 VQFAST_BENCH_IO_FRAMES=40 VQFAST_BENCH_IO_T=16 VQFAST_BENCH_IO_SIZE=256 \
  VQFAST_BENCH_IO_CLIP_BATCH=8 python bench/bench_io_video.py
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch

VIDEOS = int(os.environ.get("VQFAST_BENCH_IO_VIDEOS", "8"))
FRAMES = int(os.environ.get("VQFAST_BENCH_IO_FRAMES", "20"))
SRC_H, SRC_W = (int(v) for v in os.environ.get("VQFAST_BENCH_IO_SRC", "240x320").split("x"))
T = int(os.environ.get("VQFAST_BENCH_IO_T", "8"))
SIZE = int(os.environ.get("VQFAST_BENCH_IO_SIZE", "128"))
BATCH = int(os.environ.get("VQFAST_BENCH_IO_CLIP_BATCH", "4"))
THREADS = int(os.environ.get("VQFAST_BENCH_IO_THREADS", "2"))
STEP_MS = float(os.environ.get("VQFAST_BENCH_IO_STEP_MS", "0"))
ROUNDS = int(os.environ.get("VQFAST_BENCH_IO_ROUNDS", "1"))
SEED, EPOCH = 0, 1
PROVIDERS = ["vqfast", "dl_pil"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_io_latents (RSS sampler)


def frames_root() -> str:
    base = os.environ.get("VQFAST_BENCH_IO_DIR") or os.path.join(tempfile.gettempdir(), "vqfast-bench-io")
    return os.path.join(base, f"frames_{VIDEOS}x{FRAMES}_{SRC_H}x{SRC_W}")


def make_frames() -> str:
    """JPEG frame folders with smooth moving content plus texture (realistic compression)."""
    from PIL import Image

    root = frames_root()
    if os.path.exists(os.path.join(root, "COMPLETE")):
        return root
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SRC_H, 0:SRC_W].astype(np.float32)
    texture = rng.normal(0, 12, (SRC_H, SRC_W, 3)).astype(np.float32)
    for v in range(VIDEOS):
        d = os.path.join(root, f"video_{v:04d}")
        os.makedirs(d, exist_ok=True)
        phase = rng.uniform(0, 6.28, 3)
        for i in range(FRAMES):
            img = np.stack([128 + 90 * np.sin(xx / (23 + 7 * c) + yy / (31 + 5 * c) + phase[c] + i * 0.15) for c in range(3)], -1)
            img = np.clip(img + texture, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(d, f"{i:06d}.jpg"), quality=90)
    open(os.path.join(root, "COMPLETE"), "w").close()
    return root


def cover(h: int, w: int) -> Tuple[int, int]:
    s = max(SIZE / h, SIZE / w)
    return max(SIZE, round(h * s)), max(SIZE, round(w * s))


class _PilClips(torch.utils.data.Dataset):
    def __init__(self, plan: List[Tuple[str, int]]) -> None:
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int):
        from PIL import Image

        video, start = self.plan[i]
        names = sorted(os.listdir(video))
        out = np.empty((T, SIZE, SIZE, 3), np.uint8)  # (T, H, W, C)
        for t in range(T):
            im = Image.open(os.path.join(video, names[start + t]))
            w, h = im.size
            rh, rw = cover(h, w)
            im.draft("RGB", (rw, rh))
            im = im.convert("RGB")
            if im.size != (rw, rh):
                im = im.resize((rw, rh), Image.BILINEAR)
            top, left = (rh - SIZE) // 2, (rw - SIZE) // 2
            out[t] = np.asarray(im)[top:top + SIZE, left:left + SIZE]
        return torch.from_numpy(out), i


def _worker_init(_):
    torch.set_num_threads(1)


def provider_iter(name: str, root: str, plan: List[Tuple[str, int]]):
    if name == "vqfast":
        from vqfast.io import VideoClipLoader

        loader = VideoClipLoader(root, clip_len=T, size=SIZE, batch_size=BATCH, seed=SEED, num_threads=THREADS,
                                 prefetch=4)
        loader.set_epoch(EPOCH)
        for frames, paths in loader:
            yield frames, paths
    elif name == "dl_pil":
        dl = torch.utils.data.DataLoader(_PilClips(plan), batch_size=BATCH, num_workers=THREADS, drop_last=True,
                                         prefetch_factor=2, worker_init_fn=_worker_init)
        for frames, idx in dl:
            yield frames, [plan[i][0] for i in idx.tolist()]
    else:
        raise ValueError(f"unknown provider {name!r}; allowed: {PROVIDERS}")


def epoch_plan(root: str) -> List[Tuple[str, int]]:
    from vqfast.io import VideoClipLoader

    loader = VideoClipLoader(root, clip_len=T, size=SIZE, batch_size=BATCH, seed=SEED, num_threads=1)
    return loader.epoch_plan(EPOCH)


def _cpu_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def make_source(name: str, root: str, plan):
    """Set a provider up outside the timing (loader built, DataLoader workers persistent);
    returns a function giving one epoch's iterator of (frames, paths)."""
    if name in ("vqfast", "vqfast_file"):
        from vqfast.io import VideoClipLoader

        loader = VideoClipLoader(root, clip_len=T, size=SIZE, batch_size=BATCH, seed=SEED, num_threads=THREADS, prefetch=4)

        def epoch():
            loader.set_epoch(EPOCH)
            return iter(loader)

        return epoch
    ds = _PilClips(plan) if name == "dl_pil" else _PyAvClips(plan)
    dl = torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=THREADS, drop_last=True, prefetch_factor=2,
                                     worker_init_fn=_worker_init, persistent_workers=True)
    return lambda: ((f, [plan[i][0] for i in idx.tolist()]) for f, idx in dl)


def steady(name: str, root: str, plan, iterator=None) -> Dict:
    """Steady state: the second epoch of a set-up provider (no loader build, no worker start)."""
    src = make_source(name, root, plan)
    run_epoch(name, root, plan, source=src)
    r = run_epoch(name, root, plan, source=src)
    return {"steady_clips_per_s": r["clips_per_s"], "steady_wait_p50_ms": r["wait_p50_ms"],
            "steady_wait_p95_ms": r["wait_p95_ms"], "steady_cpu_s": r["cpu_s"]}


def run_epoch(name: str, root: str, plan, iterator=None, source=None) -> Dict:
    from bench_io_latents import RssSampler

    sampler = RssSampler()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    it = source() if source is not None else (iterator or provider_iter)(name, root, plan)
    waits, paths, sample, t_first, n = [], [], None, None, 0
    while True:
        tw = time.perf_counter()
        try:
            frames, ps = next(it)
        except StopIteration:
            break
        waits.append(time.perf_counter() - tw)
        if t_first is None:
            t_first = time.perf_counter() - t0
            sample = frames.clone()
        paths.extend(ps)
        n += frames.shape[0]
        if STEP_MS:
            time.sleep(STEP_MS / 1000)
    total = time.perf_counter() - t0
    del it
    w = np.array(waits[1:] or waits) * 1e3
    return {
        **sampler.stop(),
        "provider": name, "clips": n, "seconds": total, "clips_per_s": n / total,
        "frames_per_s": n * T / total, "first_batch_ms": (t_first or 0) * 1e3,
        "wait_p50_ms": float(np.percentile(w, 50)), "wait_p95_ms": float(np.percentile(w, 95)),
        "cpu_s": _cpu_seconds() - cpu0, "digest": {"paths": paths, "first": sample},
    }


def assert_close_to_baseline(digest: Dict, ref: Dict, name: str, mean_tol: float = 1.5, p999_tol: float = 12) -> Dict:
    assert digest["paths"] == ref["paths"], f"{name}: clip order differs from the baseline"
    diff = (digest["first"].int() - ref["first"].int()).abs().float()
    stats = {"mean_abs_diff": float(diff.mean()), "p999_abs_diff": float(diff.flatten().quantile(0.999))}
    # JPEG decoders (libjpeg-turbo vs zune-jpeg) differ by a few LSB, and for video files swscale's
    # bilinear (baseline) vs ours after an RGB conversion at source size; a wrong frame is >> this.
    assert stats["mean_abs_diff"] < mean_tol and stats["p999_abs_diff"] <= p999_tol, f"{name}: pixels differ: {stats}"
    return stats


@pytest.fixture(scope="module")
def data():
    root = make_frames()
    plan = epoch_plan(root)
    ref = run_epoch("dl_pil", root, plan)["digest"]
    return root, plan, ref


@pytest.mark.parametrize("provider", PROVIDERS)
def test_video_epoch(benchmark, data, provider):
    root, plan, ref = data
    results = []
    benchmark.group = f"video clips T={T} {SIZE}^2 B={BATCH} from {SRC_H}x{SRC_W} JPEG, N={THREADS}"
    benchmark.pedantic(lambda: results.append(run_epoch(provider, root, plan)), rounds=ROUNDS, iterations=1)
    r = results[-1]
    r.update(assert_close_to_baseline(r.pop("digest"), ref, provider))
    benchmark.extra_info.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})


# --------------------------------------------------------------------------------------------
# Video files (needs the extension's `video` feature and PyAV): vqfast_file vs dl_pyav

def files_root() -> str:
    base = os.environ.get("VQFAST_BENCH_IO_DIR") or os.path.join(tempfile.gettempdir(), "vqfast-bench-io")
    return os.path.join(base, f"h264_{VIDEOS}x{FRAMES}_{SRC_H}x{SRC_W}")


def make_videos() -> str:
    """H.264 CFR files, GOP 16, no B-frames (the canonical training encode), written with PyAV."""
    import av

    root = files_root()
    if os.path.exists(os.path.join(root, "COMPLETE")):
        return root
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SRC_H, 0:SRC_W].astype(np.float32)
    texture = rng.normal(0, 12, (SRC_H, SRC_W, 3)).astype(np.float32)
    for v in range(VIDEOS):
        phase = rng.uniform(0, 6.28, 3)
        with av.open(os.path.join(root, f"video_{v:04d}.mp4"), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = SRC_W, SRC_H, "yuv420p"
            s.options = {"g": "16", "bf": "0", "crf": "20"}
            for i in range(FRAMES):
                img = np.stack([128 + 90 * np.sin(xx / (23 + 7 * k) + yy / (31 + 5 * k) + phase[k] + i * 0.15)
                                for k in range(3)], -1)
                img = np.clip(img + texture, 0, 255).astype(np.uint8)
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
    open(os.path.join(root, "COMPLETE"), "w").close()
    return root


class _PyAvClips(torch.utils.data.Dataset):
    """Per clip: open, seek to the keyframe, decode forward, pick frames by PTS (the same frame
    index vqfast uses), swscale bilinear to the cover size, centre crop. One FFmpeg thread."""

    def __init__(self, plan: List[Tuple[str, int]]) -> None:
        import av

        self.plan = plan
        self.index = {}
        for path in sorted({p for p, _ in plan}):
            with av.open(path) as c:
                pts = sorted(p.pts for p in c.demux(video=0) if p.pts is not None)
            self.index[path] = pts

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int):
        import av

        path, start = self.plan[i]
        pts = self.index[path]
        want = {pts[start + t]: t for t in range(T)}
        out = np.empty((T, SIZE, SIZE, 3), np.uint8)  # (T, H, W, C)
        with av.open(path) as c:
            s = c.streams.video[0]
            s.thread_type, s.thread_count = "SLICE", 1
            c.seek(pts[start], stream=s, backward=True, any_frame=False)
            got = 0
            for frame in c.decode(s):
                t = want.get(frame.pts)
                if t is not None:
                    rh, rw = cover(frame.height, frame.width)
                    img = frame.reformat(width=rw, height=rh, format="rgb24", interpolation="BILINEAR").to_ndarray()
                    top, left = (rh - SIZE) // 2, (rw - SIZE) // 2
                    out[t] = img[top:top + SIZE, left:left + SIZE]
                    got += 1
                    if got == T:
                        break
        return torch.from_numpy(out), i


def has_video_feature() -> bool:
    try:
        import av  # noqa: F401

        import vqfast._io as native
    except ImportError:
        return False
    return bool(getattr(native, "HAS_VIDEO", False))


def file_iter(name: str, root: str, plan):
    if name == "vqfast_file":
        from vqfast.io import VideoClipLoader

        loader = VideoClipLoader(root, clip_len=T, size=SIZE, batch_size=BATCH, seed=SEED, num_threads=THREADS, prefetch=4)
        loader.set_epoch(EPOCH)
        yield from loader
    else:
        dl = torch.utils.data.DataLoader(_PyAvClips(plan), batch_size=BATCH, num_workers=THREADS, drop_last=True,
                                         prefetch_factor=2, worker_init_fn=_worker_init)
        for frames, idx in dl:
            yield frames, [plan[i][0] for i in idx.tolist()]


@pytest.mark.parametrize("provider", ["vqfast_file", "dl_pyav"])
def test_video_file_epoch(benchmark, provider):
    if not has_video_feature():
        pytest.skip("needs PyAV and the extension built with the `video` cargo feature")
    root = make_videos()
    plan = epoch_plan(root)
    results = []

    def run():
        r = run_epoch(provider, root, plan, iterator=file_iter)
        results.append(r)

    benchmark.group = f"video files (H.264 {SRC_H}x{SRC_W}, GOP 16) T={T} {SIZE}^2 B={BATCH}, N={THREADS}"
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    r = results[-1]
    ref = run_epoch("dl_pyav", root, plan, iterator=file_iter)["digest"] if provider != "dl_pyav" else r["digest"]
    r.update(assert_close_to_baseline(r.pop("digest"), ref, provider, mean_tol=3.0, p999_tol=40))
    benchmark.extra_info.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})


def frame_files(root: str) -> List[str]:
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".jpg")]


def _child(provider: str, cache: str) -> None:
    from bench_io_latents import evict

    root = make_frames()
    plan = epoch_plan(root)
    if cache == "cold":
        evict(frame_files(root))
    r = run_epoch(provider, root, plan)
    r["cache"] = cache
    digest = r.pop("digest")
    if cache == "warm":
        r.update(steady(provider, root, plan))
    torch.save({"paths": digest["paths"], "first": digest["first"]}, os.path.join(root, f"digest_{provider}_{cache}.pt"))
    print("RESULT " + json.dumps(r))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--file-child":
        vroot = make_videos()
        plan = epoch_plan(vroot)
        r = run_epoch(sys.argv[2], vroot, plan, iterator=file_iter)
        d = r.pop("digest")
        r.update(steady(sys.argv[2], vroot, plan))
        torch.save({"paths": d["paths"], "first": d["first"]}, os.path.join(vroot, f"digest_{sys.argv[2]}.pt"))
        print("RESULT " + json.dumps(r))
        return
    root = make_frames()
    print(f"# {VIDEOS} videos x {FRAMES} JPEG frames {SRC_H}x{SRC_W}, T={T}, {SIZE}^2, B={BATCH}, N={THREADS}", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    rows = []
    for cache, provider in [(c, p) for c in ("warm", "cold") for p in ("dl_pil", "vqfast")]:
        if cache == "warm":
            for f in frame_files(root):
                with open(f, "rb") as fh:
                    fh.read()
        out = subprocess.run([sys.executable, __file__, "--child", provider, cache], env=env, check=True,
                             capture_output=True, text=True).stdout
        r = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])
        rows.append(r)
        st = f"  steady {r['steady_clips_per_s']:6.1f} clips/s (wait p50 {r['steady_wait_p50_ms']:6.1f} p95 {r['steady_wait_p95_ms']:6.1f})" if "steady_clips_per_s" in r else ""
        print(f"{cache} {provider:7s} {r['clips_per_s']:7.1f} clips/s{st}  first {r['first_batch_ms']:7.1f} ms"
              f"  wait p50 {r['wait_p50_ms']:7.1f} p95 {r['wait_p95_ms']:7.1f} ms  cpu {r['cpu_s']:5.1f} s"
              f"  peak RSS (tree) {r['peak_tree_rss_mb']:5.0f} MB (before {r['rss_before_mb']:4.0f})", flush=True)
    for cache in ("warm", "cold"):
        ref = torch.load(os.path.join(root, f"digest_dl_pil_{cache}.pt"), weights_only=True)
        got = torch.load(os.path.join(root, f"digest_vqfast_{cache}.pt"), weights_only=True)
        print(f"# {cache} output check vs dl_pil:", assert_close_to_baseline(got, ref, "vqfast"))
    if has_video_feature():
        vroot = make_videos()
        print(f"# video files: {VIDEOS} H.264 {SRC_H}x{SRC_W} GOP 16, {FRAMES} frames each", flush=True)
        for provider in ("dl_pyav", "vqfast_file"):
            out = subprocess.run([sys.executable, __file__, "--file-child", provider], env=env, check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])
            rows.append(r)
            print(f"file {provider:11s} {r['clips_per_s']:7.1f} clips/s  steady {r['steady_clips_per_s']:6.1f} clips/s"
                  f" (wait p50 {r['steady_wait_p50_ms']:6.1f} p95 {r['steady_wait_p95_ms']:6.1f})  first {r['first_batch_ms']:7.1f} ms"
                  f"  wait p50 {r['wait_p50_ms']:7.1f} p95 {r['wait_p95_ms']:7.1f} ms  cpu {r['cpu_s']:5.1f} s"
                  f"  peak RSS (tree) {r['peak_tree_rss_mb']:5.0f} MB", flush=True)
        ref = torch.load(os.path.join(vroot, "digest_dl_pyav.pt"), weights_only=True)
        got = torch.load(os.path.join(vroot, "digest_vqfast_file.pt"), weights_only=True)
        print("# video files output check vs dl_pyav:", assert_close_to_baseline(got, ref, "vqfast_file", 3.0, 40))
    out_json = os.environ.get("VQFAST_BENCH_IO_JSON")
    if out_json:
        with open(out_json, "w") as f:
            json.dump({"videos": VIDEOS, "frames": FRAMES, "src": [SRC_H, SRC_W], "T": T, "size": SIZE, "batch": BATCH,
                       "threads": THREADS, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
