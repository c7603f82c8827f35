"""Check one crash state: the format's fsck (read-only, then repair on a copy) and the
workload's assertions on the files it touched.

Verdicts, worst last: ``clean`` (fsck finds no error and every file holds an acceptable
version), ``repaired`` (fsck found errors, repair fixed them all, the files are acceptable),
``lost`` (the volume is consistent, after repair if needed, but a file holds a version the
workload does not allow: fsync'd data lost or a torn mix), ``unreadable`` (fsck or open raised,
or repair left errors).
"""

from __future__ import annotations

from dataclasses import dataclass

from fsproto.blockdev.memory import MemoryDevice
from fsproto.crash.states import CrashState
from fsproto.errors import FsprotoError
from fsproto.formats.base import Format

VERDICTS = ("clean", "repaired", "lost", "unreadable")


@dataclass
class Verdict:
    verdict: str
    detail: str = ""


def _short(b: bytes | None) -> str:
    return "absent" if b is None else f"{len(b)} bytes"


SECTOR = 512


def allowed(got: bytes | None, versions: list[bytes | None]) -> bool:
    """*got* is one of *versions*, or (an in-place overwrite cut short) has the length of one
    and each 512-byte sector equal to that sector of some version: what a disk that writes
    sectors atomically but not requests leaves. No filesystem promises more without fsync."""
    if got in versions:
        return True
    if got is None:
        return False
    same = [v for v in versions if v is not None]
    if not any(len(v) == len(got) for v in same):
        return False
    for at in range(0, len(got), SECTOR):
        piece = got[at : at + SECTOR]
        if not any(v[at : at + SECTOR] == piece for v in same):
            return False
    return True


def check_files(fmt: Format, dev: MemoryDevice, expect: dict[str, list[bytes | None]]) -> str:
    """'' when every path holds one of its acceptable contents, else what is wrong."""
    fs = fmt.open(dev)
    try:
        for path, ok in sorted(expect.items()):
            if fs.exists(path):
                got: bytes | None = fs.read(path, 0, fs.stat(path).size)
            else:
                got = None
            if not allowed(got, ok):
                return f"{path}: holds {_short(got)}, allowed {', '.join(_short(a) for a in ok)}"
    finally:
        fs.close()
    return ""


def check_state(fmt: Format, image: bytes, block_size: int, expect: dict[str, list[bytes | None]]) -> Verdict:
    """The verdict for one rebuilt image (never raises for anything the format does)."""
    ro = MemoryDevice.from_bytes(image, block_size, name="crash-state", read_only=True)
    try:
        report = fmt.fsck(ro)
    except FsprotoError as e:
        return Verdict("unreadable", f"fsck: {type(e).__name__}: {e}")
    verdict, dev = "clean", ro
    if not report.clean:
        dev = MemoryDevice.from_bytes(image, block_size, name="crash-state-repair")
        try:
            fixed = fmt.fsck(dev, repair=True)
            again = fmt.fsck(dev)
        except FsprotoError as e:
            return Verdict("unreadable", f"fsck --repair: {type(e).__name__}: {e}")
        if not fixed.clean or not again.clean:
            left = "; ".join(str(p) for p in again.errors[:3])
            return Verdict("unreadable", f"repair left errors: {left}")
        verdict = "repaired"
        first = report.errors[0] if report.errors else None
        detail = f"fsck: {first}" if first else ""
    else:
        detail = ""
    try:
        wrong = check_files(fmt, dev, expect)
    except FsprotoError as e:
        return Verdict("unreadable", f"read after fsck: {type(e).__name__}: {e}")
    if wrong:
        return Verdict("lost", wrong)
    return Verdict(verdict, detail)


def expectations(history_acceptable, paths: list[str], state: CrashState, flush_points: list[int]) -> dict[str, list[bytes | None]]:
    """Per path the contents allowed in *state*: durable from the last flush it fully has."""
    durable = max([0] + [f for f in flush_points if f <= state.durable])
    return {p: history_acceptable(p, durable, state.present) for p in paths}
