"""An fsx-style differential tester (after xfstests ``ltp/fsx.c``): seeded random file operations
run on a mount and on a reference directory (a kernel filesystem), every result compared.

Operations: write at an offset, append (O_APPEND), read (compared byte for byte), truncate
(path or descriptor; up and down), rename (replacing), unlink, stat size, close descriptors,
and a periodic directory + contents comparison. Results are compared including errno, so a
missing file must fail the same way on both sides.

With ``mmap`` also mapped reads and mapped writes (shared mapping, msync, munmap; fsx.c's
``domapread``/``domapwrite``), which go through the kernel's page cache and, with writeback
caching, reach the format only when the kernel writes the pages back.

Unless ``keep_open`` is set, descriptors of a file are closed before it is renamed over or
unlinked: formats without orphans do not keep open-but-deleted files readable (see
fsproto.mount.inodes). With ``keep_open`` they stay open, and later operations on them act on
the deleted file, as on any kernel filesystem.

A failure raises :class:`FsxFailure` with the seed and the last operations, enough to replay.
"""

from __future__ import annotations

import collections
import mmap
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MNT, REF = 0, 1


class FsxFailure(AssertionError):
    pass


@dataclass
class FsxConfig:
    names: tuple[str, ...] = ("FSX0.DATA", "FSX1.DATA", "FSX2.DATA", "FSX3.DATA")
    max_size: int = 1 << 20  # largest offset + length a write or truncate reaches
    max_io: int = 64 << 10  # largest single write or read
    compare_every: int = 2000  # full directory + contents comparison period
    mmap: bool = False  # also mapped reads and writes
    keep_open: bool = False  # descriptors survive rename-over and unlink of their file


class Fsx:
    def __init__(self, mnt: Path, ref: Path, seed: int, config: FsxConfig | None = None) -> None:
        self.roots = (Path(mnt), Path(ref))
        self.seed = seed
        self.cfg = config or FsxConfig()
        self.rng = random.Random(seed)
        self.fds: dict[str, tuple[int, int]] = {}
        self.log: collections.deque[str] = collections.deque(maxlen=60)
        self.op_index = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self._orphans: list[tuple[int, int]] = []  # descriptor pairs of deleted files (keep_open)

    # -- plumbing --------------------------------------------------------------------------------
    def fail(self, message: str) -> None:
        tail = "\n".join(self.log)
        raise FsxFailure(
            f"fsx seed={self.seed} failed at op {self.op_index}: {message}\n"
            f"replay: Fsx(mnt, ref, seed={self.seed}).run({self.op_index + 1})\nlast operations:\n{tail}"
        )

    def both(self, what: str, fn: Callable[[int], object]) -> object:
        """Run *fn(side)* on the mount and on the reference; outcomes (value or errno) must match."""
        outcomes = []
        for side in (MNT, REF):
            try:
                outcomes.append(("ok", fn(side)))
            except OSError as e:
                outcomes.append(("errno", e.errno))
        if outcomes[0] != outcomes[1]:
            m, r = (self._short(o) for o in outcomes)
            self.fail(f"{what}: mount gave {m}, reference gave {r}")
        return outcomes[0][1] if outcomes[0][0] == "ok" else None

    @staticmethod
    def _short(outcome: tuple[str, object]) -> str:
        kind, value = outcome
        if kind == "errno":
            return f"errno {value} ({os.strerror(value)})"  # type: ignore[arg-type]
        if isinstance(value, bytes) and len(value) > 32:
            return f"{len(value)} bytes {value[:16]!r}..."
        return repr(value)

    def path(self, side: int, name: str) -> Path:
        return self.roots[side] / name

    def fd(self, name: str, side: int) -> int:
        if name not in self.fds:
            pair = []
            for s in (MNT, REF):
                pair.append(os.open(self.path(s, name), os.O_RDWR | os.O_CREAT, 0o644))
            self.fds[name] = (pair[0], pair[1])
        return self.fds[name][side]

    def close(self, name: str) -> None:
        pair = self.fds.pop(name, None)
        if pair:
            for fd in pair:
                os.close(fd)

    def close_all(self) -> None:
        for name in list(self.fds):
            self.close(name)

    # -- operations ----------------------------------------------------------------------------------
    def op_write(self, name: str) -> None:
        size = self.rng.randint(1, self.cfg.max_io)
        off = self.rng.randint(0, self.cfg.max_size - size)
        data = self.rng.randbytes(size)
        self.log.append(f"{self.op_index}: write {name} off={off} len={size}")
        self.both("write", lambda s: os.pwrite(self.fd(name, s), data, off))

    def op_append(self, name: str) -> None:
        size = self.rng.randint(1, self.cfg.max_io // 4)
        data = self.rng.randbytes(size)
        ref = self.path(REF, name)
        if ref.exists() and ref.stat().st_size + size > self.cfg.max_size:
            return  # bound file growth (and memory); not counted as an operation on the mount
        self.log.append(f"{self.op_index}: append {name} len={size}")

        def append(side: int) -> int:
            fd = os.open(self.path(side, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)

        self.both("append", append)

    def op_read(self, name: str) -> None:
        size = self.rng.randint(1, self.cfg.max_io)
        off = self.rng.randint(0, self.cfg.max_size)
        via_fd = name in self.fds
        self.log.append(f"{self.op_index}: read {name} off={off} len={size} {'fd' if via_fd else 'open'}")

        def read(side: int) -> bytes:
            if via_fd:
                return os.pread(self.fds[name][side], size, off)
            fd = os.open(self.path(side, name), os.O_RDONLY)
            try:
                return os.pread(fd, size, off)
            finally:
                os.close(fd)

        self.both("read", read)

    def op_truncate(self, name: str) -> None:
        size = self.rng.choice([0, self.rng.randint(0, self.cfg.max_size), self.rng.randint(0, 4096)])
        via_fd = name in self.fds and self.rng.random() < 0.5
        self.log.append(f"{self.op_index}: truncate {name} size={size} {'fd' if via_fd else 'path'}")
        if via_fd:
            self.both("ftruncate", lambda s: os.ftruncate(self.fds[name][s], size))
        else:
            self.both("truncate", lambda s: os.truncate(self.path(s, name), size))

    def op_rename(self, name: str) -> None:
        target = self.rng.choice(self.cfg.names)
        self.log.append(f"{self.op_index}: rename {name} -> {target}")
        if not self.cfg.keep_open:
            self.close(name)
            self.close(target)
        elif name != target and name in self.fds:
            # The descriptor follows its file to the new name; the replaced file's stays open.
            orphan = self.fds.pop(target, None)
            self.fds[target] = self.fds.pop(name)
            if orphan:
                self._orphans.append(orphan)
        self.both("rename", lambda s: os.rename(self.path(s, name), self.path(s, target)))

    def op_unlink(self, name: str) -> None:
        self.log.append(f"{self.op_index}: unlink {name}")
        if not self.cfg.keep_open:
            self.close(name)
        elif name in self.fds:
            self._orphans.append(self.fds.pop(name))
        self.both("unlink", lambda s: os.unlink(self.path(s, name)))

    def op_stat(self, name: str) -> None:
        self.log.append(f"{self.op_index}: stat {name}")
        self.both("stat size", lambda s: os.stat(self.path(s, name)).st_size)

    def op_close(self, name: str) -> None:
        self.log.append(f"{self.op_index}: close {name}")
        self.close(name)
        if self._orphans:  # also the oldest deleted-but-open file, after using it once more
            m, r = self._orphans.pop(0)
            self.both("read deleted", lambda s: os.pread((m, r)[s], 1 << 20, 0))
            os.close(m)
            os.close(r)

    def op_mapread(self, name: str) -> None:
        size = self.rng.randint(1, self.cfg.max_io)
        off = self.rng.randint(0, self.cfg.max_size - size)
        self.log.append(f"{self.op_index}: mapread {name} off={off} len={size}")

        def mapread(side: int) -> bytes:
            fd = self.fd(name, side)
            length = os.fstat(fd).st_size
            if length == 0:
                return b""  # nothing to map
            with mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ) as m:
                return m[min(off, length) : min(off + size, length)]

        self.both("mapread", mapread)

    def op_mapwrite(self, name: str) -> None:
        size = self.rng.randint(1, self.cfg.max_io)
        off = self.rng.randint(0, self.cfg.max_size - size)
        data = self.rng.randbytes(size)
        self.log.append(f"{self.op_index}: mapwrite {name} off={off} len={size}")

        def mapwrite(side: int) -> int:
            fd = self.fd(name, side)
            if os.fstat(fd).st_size < off + size:
                os.ftruncate(fd, off + size)  # a mapping cannot extend a file (fsx.c does the same)
            with mmap.mmap(fd, off + size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
                m[off : off + size] = data
                m.flush()  # msync(MS_SYNC)
            return os.fstat(fd).st_size

        self.both("mapwrite", mapwrite)

    OPS: tuple[tuple[str, int], ...] = (
        ("write", 30),
        ("read", 25),
        ("append", 10),
        ("truncate", 10),
        ("stat", 8),
        ("rename", 5),
        ("unlink", 3),
        ("close", 5),
    )
    MMAP_OPS: tuple[tuple[str, int], ...] = (("mapread", 6), ("mapwrite", 6))

    def compare_all(self) -> None:
        """Directory listings and every file's full contents must be equal."""
        self.log.append(f"{self.op_index}: compare all")
        self.close_all()
        for m, r in self._orphans:
            os.close(m)
            os.close(r)
        self._orphans.clear()
        listings = [sorted(os.listdir(root)) for root in self.roots]
        if listings[0] != listings[1]:
            self.fail(f"directory differs: mount {listings[0]} reference {listings[1]}")
        for name in listings[1]:
            self.both(f"contents of {name}", lambda s: self.path(s, name).read_bytes())

    def run(self, nops: int) -> collections.Counter[str]:
        names, weights = zip(*(self.OPS + (self.MMAP_OPS if self.cfg.mmap else ())))
        for self.op_index in range(nops):
            op = self.rng.choices(names, weights)[0]
            name = self.rng.choice(self.cfg.names)
            getattr(self, f"op_{op}")(name)
            self.counts[op] += 1
            if self.op_index % self.cfg.compare_every == self.cfg.compare_every - 1:
                self.compare_all()
        self.compare_all()
        return self.counts
