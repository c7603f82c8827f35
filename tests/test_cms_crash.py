"""Crash consistency: a power cut after ANY single device write of a scripted workload leaves a
disk that fsck accepts (no errors) holding the old or the new state of the operation in
progress; fsck --repair then leaves no finding at all and the same contents.

Uses rawdev's FaultInjectingDevice (cut by write() calls, ``after_cut="error"`` so the workload
stops at the cut) over a MemoryDevice with 512-byte sectors.
"""

from __future__ import annotations

from typing import Callable

import pytest

from fsproto.errors import MediaError
from fsproto.formats.cms import FORMAT
from fsproto.rawdev import FaultInjectingDevice, MemoryDevice

CLOCK = lambda: 1_700_000_000.0  # noqa: E731 - deterministic FST dates


def _data(n: int, seed: int) -> bytes:
    return bytes((seed * 37 + i * 11) & 0xFF for i in range(n))


def _setup(fs) -> None:
    for i in range(13):  # slots 2..14: two directory blocks at 512
        fs.create(f"/FILE{i:02}.DATA")
        if i % 3 == 0:
            fs.write(f"/FILE{i:02}.DATA", 0, _data(300 * (i + 1), i))
    fs.create("/BIG.DATA")
    fs.write("/BIG.DATA", 0, _data(20000, 99))  # V, 1 level at 512 (41 blocks: levels 1)
    fs.create("/FIX.DATA")
    fs.setxattr("/FIX.DATA", "user.record_format", b"F")
    fs.setxattr("/FIX.DATA", "user.record_lrecl", b"80")
    fs.write("/FIX.DATA", 0, _data(800, 5))


def _workload() -> list[tuple[str, Callable]]:
    return [
        ("create NEW1 (directory grows)", lambda fs: fs.create("/NEW1.DATA")),
        ("append to empty NEW1", lambda fs: fs.write("/NEW1.DATA", 0, _data(5000, 1))),
        ("append to BIG (tree gains a level)", lambda fs: fs.write("/BIG.DATA", 20000, _data(3000, 2))),
        ("overwrite across records", lambda fs: fs.write("/BIG.DATA", 100, _data(9000, 3))),
        ("truncate BIG mid-record", lambda fs: fs.truncate("/BIG.DATA", 12345)),
        ("truncate FILE03 up", lambda fs: fs.truncate("/FILE03.DATA", 2500)),
        ("write past EOF with a gap", lambda fs: fs.write("/FILE06.DATA", 4000, _data(700, 4))),
        ("F overwrite and extend", lambda fs: fs.write("/FIX.DATA", 790, _data(200, 5))),
        ("delete slot 3 (last FST moves, directory shrinks)", lambda fs: fs.unlink("/FILE01.DATA")),
        ("rename", lambda fs: fs.rename("/FILE02.DATA", "/RENAMED.DATA")),
        ("rename over an existing file", lambda fs: fs.rename("/FILE09.DATA", "/FILE04.DATA")),
        ("delete the last FST", lambda fs: fs.unlink("/FIX.DATA")),
        ("set mtime", lambda fs: fs.set_mtime("/BIG.DATA", 946_684_800 * 10**9)),
        ("set record format", lambda fs: fs.setxattr("/FILE05.DATA", "user.record_format", b"F")),
        ("create NEW2", lambda fs: fs.create("/NEW2.DATA")),
        ("create NEW3", lambda fs: fs.create("/NEW3.DATA")),
        ("delete slot 12 (last FST moves from another block)", lambda fs: fs.unlink("/FILE10.DATA")),
        ("delete FILE00 (moves across blocks)", lambda fs: fs.unlink("/FILE00.DATA")),
        ("truncate NEW1 to zero", lambda fs: fs.truncate("/NEW1.DATA", 0)),
    ]


def _state(dev) -> dict[str, tuple[bytes, str, str, int]]:
    fs = FORMAT.open(dev)
    out = {}
    for st in fs.listdir("/"):
        p = "/" + st.name
        out[st.name] = (fs.read(p, 0, st.size), st.extra["recfm"], st.extra["lrecl"], st.mtime_ns)
    return out


def _base(bs: int) -> MemoryDevice:
    dev = MemoryDevice(num_blocks=(1 << 20) // 512, block_size=512)
    FORMAT.mkfs(dev, block_size=bs, label="CRASH", clock=CLOCK)
    fs = FORMAT.open(dev, clock=CLOCK)
    _setup(fs)
    fs.close()
    return dev


def _run(dev, cut: int | None) -> tuple[FaultInjectingDevice, list[int]]:
    fdev = FaultInjectingDevice(dev, cut_after_writes=cut, after_cut="error", owns_inner=False)
    fs = FORMAT.open(fdev, clock=CLOCK)
    marks = []
    try:
        for _, op in _workload():
            op(fs)
            marks.append(fdev.writes_seen)
    except MediaError:
        pass
    return fdev, marks


@pytest.mark.parametrize("bs", [512, 4096])
def test_power_cut_after_every_write(bs: int) -> None:
    base = _base(bs)
    states = [_state(base)]
    ref = base.clone()
    fdev = FaultInjectingDevice(ref, owns_inner=False)
    fs = FORMAT.open(fdev, clock=CLOCK)
    marks = [0]
    for _, op in _workload():
        op(fs)
        marks.append(fdev.writes_seen)
        states.append(_state(ref))
    assert FORMAT.fsck(ref).problems == []
    total = marks[-1]
    assert total > 50  # the workload really writes
    names = [n for n, _ in _workload()]
    for cut in range(total + 1):
        dev = base.clone()
        _run(dev, cut)
        k = next(i for i in range(1, len(marks)) if marks[i] >= cut)  # op in progress (or just done)
        report = FORMAT.fsck(dev)
        assert report.clean, (cut, names[k - 1], [str(p) for p in report.problems])
        got = _state(dev)
        assert got in (states[k - 1], states[k]), (cut, names[k - 1])
        if report.problems:
            fixed = FORMAT.fsck(dev, repair=True)
            assert fixed.clean
            again = FORMAT.fsck(dev)
            assert again.problems == [], (cut, names[k - 1], [str(p) for p in again.problems])
            assert _state(dev) == got


def test_write_errors_mid_operation_leave_a_clean_disk() -> None:
    """A write that fails with MediaError (bad sector) mid-operation: the filesystem re-reads its
    state, later operations go on, and fsck finds no error."""
    import random

    rng = random.Random(5)
    for _ in range(40):
        base = MemoryDevice(num_blocks=2048, block_size=512)
        FORMAT.mkfs(base, block_size=512, label="MEDIA", clock=CLOCK)
        fdev = FaultInjectingDevice(base, owns_inner=False)
        fs = FORMAT.open(fdev, clock=CLOCK)
        failures = 0
        for _ in range(30):
            name = f"/F{rng.randint(0, 9)}.D"
            if rng.random() < 0.15:
                fdev.fail_writes(rng.randint(1, 200))
            try:
                if not fs.exists(name):
                    fs.create(name)
                fs.write(name, rng.randint(0, 3000), _data(rng.randint(1, 5000), 1))
                if rng.random() < 0.2:
                    fs.unlink(name)
            except MediaError:
                failures += 1
                fdev.heal()
        report = FORMAT.fsck(base)
        assert report.clean, [str(p) for p in report.problems]


def _random_workload(seed: int) -> list[Callable]:
    import random

    rng = random.Random(seed)
    names = [f"/R{i}.DATA" for i in range(12)]
    live: set[str] = set()
    ops: list[Callable] = []
    for _ in range(22):
        name = rng.choice(names)
        r = rng.random()
        if name not in live or r < 0.15:
            if name not in live:
                live.add(name)
                ops.append(lambda fs, n=name: fs.create(n))
            continue
        if r < 0.5:
            off, size, s = rng.randint(0, 6000), rng.randint(1, 9000), rng.randint(0, 99)
            ops.append(lambda fs, n=name, o=off, z=size, s=s: fs.write(n, o, _data(z, s)))
        elif r < 0.65:
            size = rng.randint(0, 7000)
            ops.append(lambda fs, n=name, z=size: fs.truncate(n, z))
        elif r < 0.8:
            live.discard(name)
            ops.append(lambda fs, n=name: fs.unlink(n))
        else:
            other = rng.choice(names)
            if other != name:
                live.discard(name)
                live.add(other)
                ops.append(lambda fs, a=name, b=other: fs.rename(a, b))
    return ops


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_power_cut_during_random_workloads(seed: int) -> None:
    base = MemoryDevice(num_blocks=(1 << 20) // 512, block_size=512)
    FORMAT.mkfs(base, block_size=512, label="RAND", clock=CLOCK)
    fs = FORMAT.open(base, clock=CLOCK)
    for i in range(9):  # two directory blocks before the workload starts
        fs.create(f"/PRE{i}.DATA")
    fs.close()
    ops = _random_workload(seed)
    ref = base.clone()
    fdev = FaultInjectingDevice(ref, owns_inner=False)
    fs = FORMAT.open(fdev, clock=CLOCK)
    marks, states = [0], [_state(ref)]
    for op in ops:
        op(fs)
        marks.append(fdev.writes_seen)
        states.append(_state(ref))
    for cut in range(marks[-1] + 1):
        dev = base.clone()
        f = FaultInjectingDevice(dev, cut_after_writes=cut, after_cut="error", owns_inner=False)
        wfs = FORMAT.open(f, clock=CLOCK)
        try:
            for op in ops:
                op(wfs)
        except MediaError:
            pass
        k = next(i for i in range(1, len(marks)) if marks[i] >= cut)
        report = FORMAT.fsck(dev)
        assert report.clean, (seed, cut, [str(p) for p in report.problems])
        assert _state(dev) in (states[k - 1], states[k]), (seed, cut, k)
