"""A conformance suite any format plugin can run (like pyfilesystem2's ``fs/test.py`` FSTestCases).

Use it from a pytest module by subclassing :class:`ConformanceTests` once per format (or per
variant) and describing the format with a :class:`FormatUnderTest`::

    from fsproto.testing.conformance import ConformanceTests, FormatUnderTest
    from mypackage.tinyfs import FORMAT

    class TestTiny(ConformanceTests):
        fut = FormatUnderTest(FORMAT, "tiny", names=("a.txt", "b.bin", "c", "d.dat", "e"))

pytest then collects every ``test_*`` method: round trips, namespace errors, random operations
against a dict model (fsx's ``good_buf`` idea), a power cut after every device write
(:class:`fsproto.rawdev.FaultInjectingDevice`), read-only and no-stray-write checks, disk full,
and corrupt-image probes (random bytes over the metadata: only fsproto errors, no hang).

Everything runs on :class:`fsproto.rawdev.MemoryDevice` copies, so a suite takes seconds. What a
format must promise: the :mod:`fsproto.vfs` contract (POSIX-like byte files; a flat format has
only ``/``), mkfs/open/fsck on a whole device, and after a cut at any write ``fsck(repair=True)``
leaves a volume that checks clean and still holds every file the interrupted work did not touch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from fsproto.errors import (AlreadyExists, DirectoryNotEmpty, FsprotoError, FsReadOnly, IsADirectory, NoSpace,
                            NotFound)
from fsproto.formats.base import Format
from fsproto.rawdev import FaultInjectingDevice, MemoryDevice
from fsproto.vfs import Filesystem

Tree = dict[str, "bytes | None"]  # path -> contents, None for a directory


@dataclass(frozen=True)
class FormatUnderTest:
    """How to make, open and name things on one format for the suite."""

    format: Format
    id: str
    names: tuple[str, ...]  # leaf names the format accepts, distinct even ignoring case (>= 5)
    mkfs_options: dict[str, Any] = field(default_factory=dict)
    open_options: dict[str, Any] = field(default_factory=dict)
    device_bytes: int = 8 << 20
    device_block_size: int = 512
    directories: bool = False  # mkdir/rmdir and nested paths
    metadata_bytes: int = 64 << 10  # the corrupt-image probes hit bytes [0, metadata_bytes)

    def fresh(self) -> MemoryDevice:
        """A newly formatted device."""
        dev = MemoryDevice(self.device_bytes // self.device_block_size, self.device_block_size,
                           name=f"{self.id}.img")
        self.format.mkfs(dev, **self.mkfs_options)
        return dev

    def open(self, dev: Any) -> Filesystem:
        return self.format.open(dev, **self.open_options)


def pattern(n: int, seed: int) -> bytes:
    """*n* bytes no two files share (so a block read from the wrong place is caught)."""
    rnd = random.Random(seed)
    return rnd.randbytes(n)


def read_tree(fs: Filesystem, path: str = "/") -> Tree:
    """Every file and directory under *path* with its bytes (read in odd-sized pieces)."""
    out: Tree = {}
    for st in fs.listdir(path):
        p = path.rstrip("/") + "/" + st.name
        if st.is_dir:
            out[p] = None
            out.update(read_tree(fs, p))
            continue
        parts, off = [], 0
        while True:
            chunk = fs.read(p, off, 7919)
            if not chunk:
                break
            parts.append(chunk)
            off += len(chunk)
        data = b"".join(parts)
        assert len(data) == st.size, f"{p}: stat says {st.size} bytes, read gave {len(data)}"
        out[p] = data
    return out


def assert_fsck_clean(fmt: Format, dev: Any) -> None:
    report = fmt.fsck(dev)
    assert not report.errors, "fsck: " + "; ".join(map(str, report.problems))


class ConformanceTests:
    """Subclass and set ``fut``; every ``test_*`` method is one conformance case."""

    fut: FormatUnderTest
    crash_points: int = 80  # cut points tried, spread over the workload's writes (all when fewer)
    random_steps: int = 250
    corrupt_rounds: int = 25

    # -- helpers ---------------------------------------------------------------------------
    def p(self, *parts: str) -> str:
        return "/" + "/".join(parts)

    def names(self, k: int) -> list[str]:
        assert len(self.fut.names) >= k, f"FormatUnderTest.names needs at least {k} names"
        return list(self.fut.names[:k])

    # -- mkfs, probe -------------------------------------------------------------------------
    def test_mkfs_gives_an_empty_clean_volume(self) -> None:
        dev = self.fut.fresh()
        assert self.fut.format.probe(dev) is True
        with self.fut.open(dev) as fs:
            assert fs.listdir("/") == []
            st = fs.statfs()
            assert 0 < st.free_blocks <= st.total_blocks
        assert_fsck_clean(self.fut.format, dev)

    def test_probe_says_no_to_zeros_and_noise_without_raising(self) -> None:
        size = self.fut.device_bytes // self.fut.device_block_size
        assert self.fut.format.probe(MemoryDevice(size, self.fut.device_block_size)) is False
        rnd = random.Random(7)
        noise = MemoryDevice.from_bytes(rnd.randbytes(1 << 20), self.fut.device_block_size)
        assert self.fut.format.probe(noise) is False
        assert self.fut.format.probe(MemoryDevice(1, self.fut.device_block_size)) is False

    # -- round trips -------------------------------------------------------------------------
    def test_round_trip_files_survive_reopen(self) -> None:
        dev = self.fut.fresh()
        sizes = [0, 1, 511, 512, 513, 4096, 70_001, 300_000]
        names = (list(self.fut.names) * 2)[: len(sizes)]
        base = "/"
        with self.fut.open(dev) as fs:
            if self.fut.directories:
                fs.mkdir(self.p(self.fut.names[0] + "d"))
                base = self.p(self.fut.names[0] + "d")
            want: Tree = {}
            for i, (name, size) in enumerate(zip(names, sizes)):
                path = (base.rstrip("/") + "/" + name) if i % 2 or base == "/" else self.p(name)
                if path in want:
                    continue
                fs.create(path)
                data = pattern(size, i)
                off = 0
                for step in (1000, 3, 65536, 4099):  # odd pieces cross every block boundary
                    if off >= size:
                        break
                    fs.write(path, off, data[off : off + step])
                    off += min(step, size - off)
                if off < size:
                    fs.write(path, off, data[off:])
                want[path] = data
            got = {k: v for k, v in read_tree(fs).items() if v is not None}
            assert got == want
        with self.fut.open(dev) as fs:
            got = {k: v for k, v in read_tree(fs).items() if v is not None}
            assert got == want
            for path, data in want.items():
                assert fs.stat(path).size == len(data)
                assert fs.read(path, len(data), 10) == b""
                if data:
                    assert fs.read(path, len(data) // 2, 5) == data[len(data) // 2 : len(data) // 2 + 5]
        assert_fsck_clean(self.fut.format, dev)

    def test_overwrite_extend_with_zeros_and_truncate(self) -> None:
        dev = self.fut.fresh()
        a = self.p(self.fut.names[0])
        with self.fut.open(dev) as fs:
            fs.create(a)
            fs.write(a, 0, b"x" * 5000)
            fs.write(a, 100, b"y" * 10)
            fs.write(a, 9000, b"z")  # a gap reads as zeros
            want = bytearray(b"x" * 5000)
            want[100:110] = b"y" * 10
            want += bytes(4000) + b"z"
            assert fs.read(a, 0, 1 << 20) == want
            fs.truncate(a, 50)
            fs.truncate(a, 3000)  # extension reads as zeros, not the old bytes
            assert fs.read(a, 0, 1 << 20) == bytes(want[:50]) + bytes(2950)
            fs.truncate(a, 0)
            assert fs.stat(a).size == 0 and fs.read(a, 0, 10) == b""
        assert_fsck_clean(self.fut.format, dev)

    def test_namespace_errors_are_typed(self) -> None:
        dev = self.fut.fresh()
        a, b, c = (self.p(n) for n in self.names(3))
        with self.fut.open(dev) as fs:
            with pytest.raises(NotFound):
                fs.stat(a)
            with pytest.raises(NotFound):
                fs.read(a, 0, 1)
            with pytest.raises(NotFound):
                fs.unlink(a)
            with pytest.raises(NotFound):
                fs.rename(a, b)
            fs.create(a)
            with pytest.raises(AlreadyExists):
                fs.create(a)
            fs.write(a, 0, b"first")
            fs.create(b)
            fs.write(b, 0, b"second")
            fs.rename(a, b)  # POSIX: replaces b
            assert not fs.exists(a) and fs.read(b, 0, 100) == b"first"
            fs.rename(b, c)
            assert [s.name for s in fs.listdir("/")] == [self.fut.names[2]]
            if self.fut.directories:
                d = self.p(self.fut.names[3])
                fs.mkdir(d)
                with pytest.raises(AlreadyExists):
                    fs.mkdir(d)
                fs.create(d + "/" + self.fut.names[4])
                with pytest.raises(DirectoryNotEmpty):
                    fs.rmdir(d)
                with pytest.raises(IsADirectory):
                    fs.unlink(d)
                with pytest.raises(IsADirectory):
                    fs.read(d, 0, 1)
                with pytest.raises(NotFound):
                    fs.create(self.p(self.fut.names[0], self.fut.names[1], "x"))
                fs.rename(c, d + "/" + self.fut.names[2])
                assert fs.read(d + "/" + self.fut.names[2], 0, 10) == b"first"
                fs.unlink(d + "/" + self.fut.names[4])
                fs.unlink(d + "/" + self.fut.names[2])
                fs.rmdir(d)
                assert fs.listdir("/") == []
        assert_fsck_clean(self.fut.format, dev)

    # -- random operations against a model ------------------------------------------------------
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_random_operations_match_a_dict_model(self, seed: int) -> None:
        dev = self.fut.fresh()
        fs = self.fut.open(dev)
        model: Tree = {}
        rnd = random.Random(seed)
        try:
            for step in range(self.random_steps):
                fs = self._random_op(fs, dev, model, rnd, step)
            assert read_tree(fs) == model
        finally:
            fs.close()
        with self.fut.open(dev) as fs:
            assert read_tree(fs) == model
        assert_fsck_clean(self.fut.format, dev)

    def _random_op(self, fs: Filesystem, dev: Any, model: Tree, rnd: random.Random, step: int) -> Filesystem:
        dirs = ["/"] + [k for k, v in model.items() if v is None]
        files = [k for k, v in model.items() if v is not None]
        ops = ["create", "write", "write", "truncate", "unlink", "rename", "reopen"]
        if self.fut.directories:
            ops += ["mkdir", "rmdir"]
        op = rnd.choice(ops)
        parent = rnd.choice(dirs)
        path = parent.rstrip("/") + "/" + rnd.choice(self.fut.names)
        if op == "reopen":
            fs.close()
            fs = self.fut.open(dev)
            assert read_tree(fs) == model, f"step {step}: tree differs after reopen"
        elif op in ("create", "mkdir"):
            exists = path in model
            try:
                fs.create(path) if op == "create" else fs.mkdir(path)
            except AlreadyExists:
                assert exists, f"step {step}: {op} {path}: AlreadyExists but the model has no such file"
            else:
                assert not exists, f"step {step}: {op} {path} succeeded over an existing name"
                model[path] = b"" if op == "create" else None
        elif op == "write" and files:
            f = rnd.choice(files)
            old = model[f] or b""
            off = rnd.randrange(0, len(old) + 3000)
            data = pattern(rnd.choice([1, 17, 512, 4097, 20000]), step)
            fs.write(f, off, data)
            buf = bytearray(old) + bytes(max(0, off - len(old)))
            buf[off : off + len(data)] = data
            model[f] = bytes(buf)
        elif op == "truncate" and files:
            f = rnd.choice(files)
            size = rnd.randrange(0, 40000)
            fs.truncate(f, size)
            old = model[f] or b""
            model[f] = old[:size] + bytes(max(0, size - len(old)))
        elif op == "unlink" and files:
            f = rnd.choice(files)
            fs.unlink(f)
            del model[f]
        elif op == "rmdir" and len(dirs) > 1:
            d = rnd.choice(dirs[1:])
            if any(k.startswith(d + "/") for k in model):
                with pytest.raises(DirectoryNotEmpty):
                    fs.rmdir(d)
            else:
                fs.rmdir(d)
                del model[d]
        elif op == "rename" and files:
            f = rnd.choice(files)
            if model.get(path, b"") is None:
                return fs  # onto a directory: a different error per format; not modelled
            fs.rename(f, path)
            model[path] = model.pop(f)
        return fs

    # -- read-only and no stray writes -------------------------------------------------------
    def _populated(self) -> MemoryDevice:
        dev = self.fut.fresh()
        with self.fut.open(dev) as fs:
            for i, name in enumerate(self.names(3)):
                fs.create(self.p(name))
                fs.write(self.p(name), 0, pattern(3000 * i + 1, i))
            if self.fut.directories:
                d = self.p(self.fut.names[3])
                fs.mkdir(d)
                fs.create(d + "/" + self.fut.names[4])
                fs.write(d + "/" + self.fut.names[4], 0, pattern(5000, 9))
        return dev

    def test_read_only_device_refuses_writes_and_stays_unchanged(self) -> None:
        dev = self._populated()
        before = dev.snapshot()
        ro = dev.clone(read_only=True)
        with self.fut.open(ro) as fs:
            tree = read_tree(fs)
            a = self.p(self.fut.names[0])
            for attempt in (lambda: fs.write(a, 0, b"x"), lambda: fs.truncate(a, 0), lambda: fs.unlink(a),
                            lambda: fs.create(self.p("new" + self.fut.names[1])),
                            lambda: fs.rename(a, self.p(self.fut.names[4]))):
                with pytest.raises(FsReadOnly):
                    attempt()
            assert read_tree(fs) == tree
        assert ro.snapshot() == before

    def test_reading_writes_nothing(self) -> None:
        dev = self._populated()
        before = dev.snapshot()
        with self.fut.open(dev) as fs:
            read_tree(fs)
            fs.statfs()
        self.fut.format.fsck(dev)
        self.fut.format.dump(dev) if type(self.fut.format).dump is not Format.dump else None
        assert dev.snapshot() == before

    # -- space -------------------------------------------------------------------------------------
    def test_disk_full_is_nospace_and_the_volume_stays_usable(self) -> None:
        dev = self.fut.fresh()
        a, b = (self.p(n) for n in self.names(2))
        with self.fut.open(dev) as fs:
            free0 = fs.statfs().free_blocks
            fs.create(a)
            fs.write(a, 0, pattern(100_000, 1))
            assert fs.statfs().free_blocks < free0
            fs.create(b)
            chunk = pattern(1 << 20, 2)
            with pytest.raises(NoSpace):
                for i in range(self.fut.device_bytes // len(chunk) + 2):
                    fs.write(b, i * len(chunk), chunk)
            assert fs.read(a, 0, 200_000) == pattern(100_000, 1)
            fs.unlink(b)
            fs.write(a, 100_000, b"more")  # space came back
        assert_fsck_clean(self.fut.format, dev)

    # -- power cut after every write --------------------------------------------------------------
    def _crash_workload(self, fs: Filesystem) -> None:
        n = self.fut.names
        fs.create(self.p(n[3]))
        for i in range(3):
            fs.write(self.p(n[3]), i * 5000, pattern(5000, 40 + i))
        fs.truncate(self.p(n[1]), 100)
        fs.rename(self.p(n[3]), self.p(n[4]))
        fs.write(self.p(n[2]), 1000, pattern(9000, 50))
        fs.unlink(self.p(n[1]))
        if self.fut.directories:
            d = self.p(n[3] + "d")
            fs.mkdir(d)
            fs.create(d + "/" + n[0])
            fs.write(d + "/" + n[0], 0, pattern(3000, 60))
        fs.flush()

    @pytest.mark.parametrize("torn", [False, True], ids=["clean-cut", "torn-write"])
    def test_power_cut_after_every_write_is_repairable(self, torn: bool) -> None:
        """Cut the power after write k for every k (torn: the write in flight lands its first
        device block, a multi-block write torn at a block boundary). Before any repair the
        volume must open and every file must read without error (a writer keeps the disk
        consistent after any single write, fsproto.vfs); then fsck --repair leaves it clean
        with the untouched file intact."""
        base = self.fut.fresh()
        keep = self.p(self.fut.names[0])
        with self.fut.open(base) as fs:
            for i, name in enumerate(self.names(3)):
                fs.create(self.p(name))
                fs.write(self.p(name), 0, pattern(7000, i))
        assert_fsck_clean(self.fut.format, base)
        counter = FaultInjectingDevice(base.clone(), owns_inner=True)
        with self.fut.open(counter) as fs:
            self._crash_workload(fs)
        total = counter.writes_seen
        assert total > 0
        points = sorted(set(range(total)) if total <= self.crash_points else
                        {round(i * (total - 1) / (self.crash_points - 1)) for i in range(self.crash_points)})
        for cut in points:
            disk = base.clone()
            faulty = FaultInjectingDevice(disk, cut_after_writes=cut, owns_inner=False,
                                          torn_bytes=self.fut.device_block_size if torn else None)
            try:
                fs = self.fut.open(faulty)
                try:
                    self._crash_workload(fs)
                finally:
                    fs.close()
            except FsprotoError:
                pass  # the format noticed its own writes vanishing: allowed
            what = f"power cut after write {cut} of {total}" + (", torn" if torn else "")
            try:
                with self.fut.open(disk.clone(read_only=True)) as fs:
                    read_tree(fs)
            except FsprotoError as e:
                raise AssertionError(f"{what}: the volume does not read before repair: {e}") from e
            try:
                self.fut.format.fsck(disk, repair=True)
            except FsprotoError as e:  # pragma: no cover - the failure message is the point
                raise AssertionError(f"{what}: fsck --repair failed: {e}") from e
            report = self.fut.format.fsck(disk)
            assert not report.errors, f"{what}: not clean after repair: " + "; ".join(map(str, report.problems))
            with self.fut.open(disk) as fs:
                tree = read_tree(fs)
            assert tree.get(keep) == pattern(7000, 0), f"{what}: {keep}, untouched by the workload, changed"

    # -- corrupt images -------------------------------------------------------------------------------
    @pytest.mark.timeout(300)
    def test_corrupt_metadata_gives_only_typed_errors(self) -> None:
        image = self._populated().snapshot()
        rnd = random.Random(11)
        limit = min(self.fut.metadata_bytes, len(image))
        for _ in range(self.corrupt_rounds):
            raw = bytearray(image)
            for _ in range(rnd.randint(1, 16)):
                raw[rnd.randrange(limit)] = rnd.randrange(256)
            dev = MemoryDevice.from_bytes(raw, self.fut.device_block_size)
            assert self.fut.format.probe(dev) in (True, False)
            try:
                with self.fut.open(dev) as fs:
                    try:
                        read_tree(fs)
                    except FsprotoError:
                        pass
            except FsprotoError:
                pass
            for repair in (False, True):
                try:
                    self.fut.format.fsck(dev, repair=repair)
                except FsprotoError:
                    pass
