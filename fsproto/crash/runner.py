"""Run a workload over a recording (and tracing) device, check every crash state, save failures.

:func:`record` formats a MemoryDevice, runs the script's setup, snapshots the image, then runs
the workload over RecordingDevice (+ TracingDevice when a trace path is given). :func:`explore`
checks the enumerated states, in worker processes with ``jobs > 1`` (fork: the recorded writes
are inherited, not pickled). :func:`save_failures` writes each failing state as an image plus
its write list, smallest state first.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from typing import Callable

from fsproto.blockdev.memory import MemoryDevice
from fsproto.blockdev.trace import TracingDevice
from fsproto.crash.check import VERDICTS, Verdict, check_state, expectations
from fsproto.crash.record import RecordingDevice, Write
from fsproto.crash.states import CrashState, apply, enumerate_states
from fsproto.crash.workload import Workload, WorkloadScript
from fsproto.formats.base import Format

SECTOR = 512


@dataclass
class Recording:
    base: bytes
    block_size: int
    writes: list[Write]
    flush_points: list[int]
    workload: Workload


@dataclass
class CrashRun:
    format: str
    workload: str
    order: str
    recording: Recording
    considered: int
    results: list[tuple[CrashState, Verdict]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {v: 0 for v in VERDICTS}
        for _, v in self.results:
            out[v.verdict] += 1
        return out

    @property
    def failures(self) -> list[tuple[CrashState, Verdict]]:
        bad = [(s, v) for s, v in self.results if v.verdict in ("lost", "unreadable")]
        return sorted(bad, key=lambda sv: (sv[0].size, sv[0].upto, sv[0].extra))

    @property
    def passed(self) -> bool:
        return not self.failures


def _image(dev: MemoryDevice) -> bytes:
    chunk = 2048
    return b"".join(dev.read(lba, min(chunk, dev.num_blocks - lba)) for lba in range(0, dev.num_blocks, chunk))


def record(fmt: Format, script: WorkloadScript, *, block_size: int | None = None, trace_path: str | None = None) -> Recording:
    dev = MemoryDevice(num_blocks=script.device_bytes // SECTOR, block_size=SECTOR, name="crashcheck")
    opts = dict(script.mkfs_options or {})
    if block_size:
        opts["block_size"] = block_size
    fmt.mkfs(dev, **opts)
    fs = fmt.open(dev)
    if script.setup:
        script.setup(fs)
    fs.close()
    base = _image(dev)
    rec = RecordingDevice(dev)
    top = TracingDevice(rec, trace_path, owns_inner=False) if trace_path else rec
    fs = fmt.open(top)
    w = Workload(fs, rec)
    for st in fs.listdir("/"):  # files the setup made are held to old-or-new as well
        if not st.is_dir:
            w.track("/" + st.name)
    script.run(w)
    fs.close()
    if top is not rec:
        top.close()
    return Recording(base, SECTOR, rec.writes, rec.flush_points, w)


_worker: tuple[Format, Recording] | None = None


def _check(state: CrashState) -> Verdict:
    assert _worker is not None
    fmt, r = _worker
    image = bytes(apply(r.base, r.block_size, r.writes, state))
    expect = expectations(r.workload.acceptable, sorted(r.workload.history), state, r.flush_points)
    return check_state(fmt, image, r.block_size, expect)


def explore(fmt: Format, script: WorkloadScript, *, order: str = "prefix", max_states: int = 2000,
            jobs: int = 1, seed: int = 0, block_size: int | None = None, trace_path: str | None = None,
            progress: Callable[[int, int], None] | None = None) -> CrashRun:
    global _worker
    r = record(fmt, script, block_size=block_size, trace_path=trace_path)
    states, considered = enumerate_states(r.writes, r.flush_points, order, max_states, seed)
    run = CrashRun(fmt.name, script.name, order, r, considered)
    _worker = (fmt, r)
    try:
        if jobs > 1 and len(states) > 1:
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                for i, v in enumerate(pool.imap(_check, states, chunksize=8)):
                    run.results.append((states[i], v))
                    if progress:
                        progress(i + 1, len(states))
        else:
            for i, s in enumerate(states):
                run.results.append((s, _check(s)))
                if progress:
                    progress(i + 1, len(states))
    finally:
        _worker = None
    return run


def save_failures(run: CrashRun, out_dir: str, limit: int = 10) -> list[str]:
    """Write ``state-NNN.img`` and ``state-NNN.writes`` for the *limit* smallest failures."""
    os.makedirs(out_dir, exist_ok=True)
    r = run.recording
    saved = []
    for n, (state, verdict) in enumerate(run.failures[:limit], start=1):
        stem = os.path.join(out_dir, f"state-{n:03}")
        with open(stem + ".img", "wb") as f:
            f.write(apply(r.base, r.block_size, r.writes, state))
        with open(stem + ".writes", "w", encoding="utf-8") as f:
            f.write(f"# {run.format} {run.workload} {state.kind}: {verdict.verdict}: {verdict.detail}\n")
            f.write(f"# {len(r.writes)} writes recorded, flushes after {r.flush_points}\n")
            f.write("\n".join(state.describe(r.writes)) + "\n")
        saved.append(stem + ".img")
    return saved
