"""Run one fuzz input in a forked child under a memory cap (RLIMIT_AS) and a timeout, and
classify the outcome:

* ``ok``: every stage loaded; ``ok-error``: a ``ShardError`` (``FrameDecodeError`` for frames)
  whose message names the file; ``error-no-path``: the right class without the file name;
* ``wrong-exception``: any other exception type (a Rust panic's ``InternalLoaderError`` too);
* ``memory``: ``MemoryError``, an allocation failure, or the cap hit; ``hang``: the timeout;
* ``crash``: killed by a signal; ``code-exec``: the marker file a hostile pickle tries to create
  appeared.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Dict, Optional

from .cases import MARKER, Case

OUTCOMES = ("ok", "ok-error", "error-no-path", "wrong-exception", "memory", "hang", "crash", "code-exec")
BAD = ("error-no-path", "wrong-exception", "memory", "hang", "crash", "code-exec")


@dataclass
class Result:
    case: Case
    outcome: str
    stage: str
    detail: str
    seconds: float
    #: CPU seconds of the child (user + system): what the input cost, whatever the machine's load.
    cpu: float = 0.0

    def as_dict(self) -> Dict[str, object]:
        return {"name": self.case.name, "category": self.case.category, "kind": self.case.kind, "outcome": self.outcome,
                "stage": self.stage, "detail": self.detail[:500], "seconds": round(self.seconds, 3), "cpu": round(self.cpu, 3)}


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _good_shard(kind: str, folder: str) -> str:
    """A valid shard of the same kind, for the skip-mode stage."""
    import numpy as np
    import torch

    lat = torch.arange(12, dtype=torch.float32).view(2, 6)
    path = os.path.join(folder, f"good.{kind}")
    if kind == "pt":
        torch.save({"latents": lat, "labels": torch.arange(2)}, path)
    elif kind == "npy":
        np.save(path, lat.numpy())
    else:
        np.savez(path, latents=lat.numpy(), labels=np.arange(2))
    return path


def _attempt(report, stage: str, fn, expected_exc, path: str) -> None:
    try:
        fn()
    except expected_exc as exc:
        report(stage, "ok-error" if path in str(exc) else "error-no-path", f"{type(exc).__name__}: {exc}")
    except MemoryError as exc:
        report(stage, "memory", repr(exc))
    except Exception as exc:  # noqa: BLE001 - classified, that is the point
        report(stage, "wrong-exception", f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
    else:
        report(stage, "ok", "")


def _frame_stages(case: Case, folder: str, report) -> None:
    """The frame sits between two good ones in a video folder; clips with raise and skip."""
    from vqfast.io import FrameDecodeError, VideoClipLoader

    from .cases import image_bytes

    video = os.path.join(folder, "root", "video0")
    os.makedirs(video)
    ext = "png" if case.data[:4] == b"\x89PNG" else "jpg"
    seed = image_bytes("PNG" if ext == "png" else "JPEG")
    for i, data in enumerate((seed, case.data, seed)):
        with open(os.path.join(video, f"frame{i}.{ext}"), "wb") as f:
            f.write(data)
    target = os.path.join(video, f"frame1.{ext}")

    def run(on_error: str) -> None:
        loader = VideoClipLoader(os.path.join(folder, "root"), clip_len=3, size=(16, 20), batch_size=1, shuffle=False,
                                 num_threads=1, on_error=on_error)
        try:
            for _ in loader:
                pass
        finally:
            loader.close()

    _attempt(report, "clips-raise", lambda: run("raise"), FrameDecodeError, target)
    # one video only: skip mode runs out of replacements and raises FrameDecodeError; that is fine
    _attempt(report, "clips-skip", lambda: run("skip"), FrameDecodeError, target)


def _file_stages(case: Case, folder: str, report) -> None:
    """``inspect_pt``/``load_pt`` for .pt; ``LatentShardLoader`` (raise, then skip beside a good shard)."""
    from vqfast.io import LatentShardLoader, ShardError, inspect_pt, load_pt

    path = os.path.join(folder, f"input.{case.kind}")
    with open(path, "wb") as f:
        f.write(case.data)
    if case.kind == "pt":
        _attempt(report, "inspect", lambda: inspect_pt(path), ShardError, path)
        _attempt(report, "load", lambda: load_pt(path), ShardError, path)
    if not (case.shard or case.kind != "pt"):
        return
    keys = list(case.keys)
    label = keys[1] if len(keys) > 1 else None

    def shards(paths, on_error):
        loader = LatentShardLoader(paths, key=keys[0], label_key=label, batch_size=2, shuffle=False, drop_last=False,
                                   num_threads=1, on_error=on_error)
        try:
            for i, _ in enumerate(loader):
                if i >= 200:
                    break
        finally:
            loader.close()

    _attempt(report, "shards-raise", lambda: shards([path], "raise"), ShardError, path)
    good = _good_shard(case.kind, folder)
    # skip mode: the bad file is left out whatever went wrong and the good one loads; any
    # exception here is a failure of the promise
    _attempt(report, "shards-skip", lambda: shards([path, good], "skip"), (), path)


def _stages(case: Case, folder: str, report) -> None:
    """The reader calls; ``report(stage, outcome, detail)`` after each."""
    if case.kind == "frame":
        _frame_stages(case, folder, report)
    else:
        _file_stages(case, folder, report)


def _child(case: Case, folder: str, wfd: int, mem_bytes: int) -> None:
    os.chdir(folder)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cap = _vm_size() + mem_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    out = os.fdopen(wfd, "w", buffering=1)

    def report(stage: str, outcome: str, detail: str) -> None:
        out.write(json.dumps({"stage": stage, "outcome": outcome, "detail": detail}) + "\n")

    try:
        _stages(case, folder, report)
    except BaseException:  # noqa: BLE001 - the harness itself failed
        report("harness", "wrong-exception", traceback.format_exc())
    out.flush()
    os._exit(0)


_RANK = {o: i for i, o in enumerate(("ok", "ok-error", "error-no-path", "wrong-exception", "memory", "hang", "crash", "code-exec"))}


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _wait(pid: int, rfd: int, timeout_s: float, t0: float):
    """Collect the child's report lines; ``status`` is None when it was killed for the timeout."""
    chunks, status, cpu, peak = [], None, 0.0, 0
    os.set_blocking(rfd, False)
    while True:
        try:
            data = os.read(rfd, 1 << 16)
            if data:
                chunks.append(data)
        except BlockingIOError:
            pass
        done, st, usage = os.wait4(pid, os.WNOHANG)
        if done:
            status, cpu, peak = st, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024
            break
        if time.monotonic() - t0 > timeout_s:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    try:
        while True:
            data = os.read(rfd, 1 << 16)
            if not data:
                break
            chunks.append(data)
    except BlockingIOError:
        pass
    os.close(rfd)
    lines = [json.loads(x) for x in b"".join(chunks).decode(errors="replace").splitlines() if x.strip()]
    return lines, status, cpu, peak


def run_case(case: Case, *, timeout_s: float = 10.0, mem_bytes: int = 2 << 30, rss_bytes: int = 3 << 29) -> Result:
    """Run ``case`` in a forked child; the worst stage decides the outcome. ``mem_bytes``: address
    space the child may add (RLIMIT_AS); ``rss_bytes``: peak RSS growth above this process that
    counts as a memory blow-up even when the cap was not hit."""
    base_rss = _rss()
    with tempfile.TemporaryDirectory(prefix="vqfast-fuzz-") as folder:
        errfile = os.path.join(folder, "stderr")
        rfd, wfd = os.pipe()
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # child
            os.close(rfd)
            fd = os.open(errfile, os.O_WRONLY | os.O_CREAT, 0o600)
            os.dup2(fd, 2)
            try:
                _child(case, folder, wfd, mem_bytes)
            finally:
                os._exit(70)
        os.close(wfd)
        lines, status, cpu, peak = _wait(pid, rfd, timeout_s, t0)
        seconds = time.monotonic() - t0
        stderr = ""
        if os.path.exists(errfile):
            with open(errfile, errors="replace") as f:
                stderr = f.read()[-2000:]
        marker = os.path.exists(os.path.join(folder, MARKER))
    worst: Optional[dict] = max(lines, key=lambda d: _RANK[d["outcome"]], default=None)
    last = lines[-1]["stage"] if lines else "start"

    def result(outcome: str, stage: str, detail: str) -> Result:
        return Result(case, outcome, stage, detail, seconds, cpu)

    if marker:
        return result("code-exec", last, "marker file created")
    if status is None:
        return result("hang", last, f"killed after {timeout_s} s")
    if os.WIFSIGNALED(status):
        kind = "memory" if "memory allocation" in stderr else "crash"
        return result(kind, last, f"signal {os.WTERMSIG(status)}: {stderr[-400:]}")
    if peak - base_rss > rss_bytes:
        return result("memory", last, f"peak RSS {peak >> 20} MiB (this process {base_rss >> 20} MiB)")
    if worst is None:
        return result("crash", "start", f"exit status {os.WEXITSTATUS(status)}: {stderr[-400:]}")
    return result(worst["outcome"], worst["stage"], worst["detail"])


def summarise(results, out=sys.stdout) -> Dict[str, Dict[str, int]]:
    table: Dict[str, Dict[str, int]] = {}
    for r in results:
        row = table.setdefault(r.case.category, {o: 0 for o in OUTCOMES})
        row[r.outcome] += 1
    out.write("| category | inputs | " + " | ".join(OUTCOMES) + " |\n")
    for cat, row in table.items():
        out.write(f"| {cat} | {sum(row.values())} | " + " | ".join(str(row[o]) for o in OUTCOMES) + " |\n")
    return table
